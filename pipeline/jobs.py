"""Two jobs: ingest one session (partitioned), and train -> evaluate -> promote on the merged dataset."""

from dagster import AssetSelection, define_asset_job

from pipeline.assets.dataset import dataset
from pipeline.assets.deployment import deployed_policy
from pipeline.assets.evaluation import policy_evaluation
from pipeline.assets.ingest import raw_episodes, validated_episodes
from pipeline.assets.training import act_policy

INGEST_JOB = "ingest_session"
TRAIN_JOB = "train_and_deploy"

ingest_session_job = define_asset_job(
    INGEST_JOB,
    selection=AssetSelection.assets(raw_episodes, validated_episodes),
    description="Check and validate the episodes of one recording session.",
)

train_and_deploy_job = define_asset_job(
    TRAIN_JOB,
    selection=AssetSelection.assets(dataset, act_policy, policy_evaluation, deployed_policy),
    description="Merge the dataset, train ACT, evaluate it, and promote it if it beats the champion.",
)
