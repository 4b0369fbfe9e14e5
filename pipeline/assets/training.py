"""act_policy: train ACT on the current dataset, track it in MLflow, and export a sealed policy bundle.

Hyperparameters are Dagster run config (typed, editable in the launchpad), generated from model/config.py
(pipeline.training_config). The asset sits in the `training` concurrency pool: with the instance's pool limit of 1
(written by `aloha ui`/`aloha demo`), one training runs at a time however many runs are launched. `launcher` picks
where the training process runs: in the step's process, a Dagster Pipes subprocess, or a Pipes-launched Kubernetes
pod (docs/SCALE_OUT.md); the work itself is pipeline.training_run in every case.
"""


import sys

from dagster import AssetExecutionContext, Failure, MaterializeResult, asset

from assets_store import StoreLayout
from pipeline.assets.dataset import dataset
from pipeline.lineage import upstream
from pipeline.resources import MlflowResource, StoreResource
from pipeline.training_config import TrainingConfig
from pipeline.training_run import TrainingRequest, run_training, typed_metadata

TRAINING_GROUP = "training"
TRAINING_POOL = "training"


def training_dataset(layout: StoreLayout, dataset_id: str, local_dir: str, launcher: str) -> str:
    """The dataset as the training process reads it: the step's local copy in process; with an object-store root,
    for a subprocess or a pod (which may run where the pipeline's local files are not), its copy in the bucket,
    <data_url>/datasets/<id> (written there manifest last, with where its episodes are)."""
    if layout.data_url and launcher != "in_process":
        return f"{layout.data_url}/datasets/{dataset_id}"
    return local_dir


def _launch_pipes(context: AssetExecutionContext, config: TrainingConfig, request: TrainingRequest) -> MaterializeResult:
    extras = {"request": request.to_json()}
    command = [sys.executable, "-m", "pipeline.training_run"]
    if config.launcher == "subprocess":
        from dagster import PipesSubprocessClient

        invocation = PipesSubprocessClient().run(context=context, command=command, extras=extras)
    else:  # "k8s": dagster-k8s is installed where Kubernetes is used, not here
        try:
            from dagster_k8s import PipesK8sClient
        except ImportError as exc:
            raise Failure("launcher 'k8s' needs the dagster-k8s package (pip install dagster-k8s==0.29.27)") from exc
        if not config.k8s_image:
            raise Failure("launcher 'k8s' needs k8s_image: an image with this project installed")
        invocation = PipesK8sClient().run(
            context=context, image=config.k8s_image, command=["python", "-m", "pipeline.training_run"],
            namespace=config.k8s_namespace, extras=extras,
            base_pod_spec={"containers": [{"resources": {"limits": {"nvidia.com/gpu": config.k8s_gpus}}}]}
            if config.k8s_gpus else None,
        )
    result = invocation.get_materialize_result()
    if result is None:
        raise Failure("the training process exited without reporting a materialization")
    return result


@asset(
    group_name=TRAINING_GROUP,
    deps=[dataset],
    pool=TRAINING_POOL,
    description="ACT trained on the current dataset; an MLflow run with params, metrics and the policy bundle.",
    kinds={"pytorch", "mlflow"},
)
def act_policy(
    context: AssetExecutionContext, config: TrainingConfig, store: StoreResource, mlflow: MlflowResource
) -> MaterializeResult:
    ds = upstream(context, "dataset")  # the dataset this run built, else the latest
    act_cfg, train_cfg = config.model_configs()
    request = TrainingRequest(
        act_config=act_cfg.model_dump(),
        train_config=train_cfg.model_dump(),
        launcher=config.launcher,
        dataset_id=str(ds["dataset_id"]),
        dataset_dir=training_dataset(store.layout, str(ds["dataset_id"]), str(ds["dataset_dir"]), config.launcher),
        store_root=str(store.layout.root),
        mlflow=mlflow.model_dump(exclude={"store"}),
        tags={"dagster_run_id": context.run.run_id, "dagster_asset": "act_policy", "dataset_dagster_run_id": ds.run_id},
    )
    if config.launcher != "in_process":
        return _launch_pipes(context, config, request)
    return MaterializeResult(metadata=typed_metadata(run_training(request, context.log.info)))
