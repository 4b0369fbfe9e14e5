"""Three jobs: ingest one session (partitioned); train -> evaluate -> promote on the merged dataset; and re-evaluate
on the robot's labelled rollouts -> re-gate, when a rollout session is finalized."""

from dagster import AssetSelection, define_asset_job

from pipeline.assets.dataset import dataset
from pipeline.assets.deployment import deployed_policy
from pipeline.assets.evaluation import policy_evaluation
from pipeline.assets.ingest import raw_episodes, validated_episodes
from pipeline.assets.real_evaluation import real_robot_evaluation
from pipeline.assets.training import act_policy

INGEST_JOB = "ingest_session"
TRAIN_JOB = "train_and_deploy"
REAL_EVALUATION_JOB = "real_evaluation"

ingest_session_job = define_asset_job(
    INGEST_JOB,
    selection=AssetSelection.assets(raw_episodes, validated_episodes),
    description="Check and validate the episodes of one recording session.",
)

train_and_deploy_job = define_asset_job(
    TRAIN_JOB,
    selection=AssetSelection.assets(dataset, act_policy, policy_evaluation, real_robot_evaluation, deployed_policy),
    description="Merge the dataset, train ACT, evaluate it, and promote it if it beats the champion.",
)

real_evaluation_job = define_asset_job(
    REAL_EVALUATION_JOB,
    selection=AssetSelection.assets(real_robot_evaluation, deployed_policy),
    description="Count the labelled rollouts of the latest candidate and the champion, and run the promotion gate "
                "again (real success decides once both have enough).",
)
