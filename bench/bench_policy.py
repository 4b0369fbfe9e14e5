"""What trains better policies, measured as closed-loop success on held-out seeds of the simulator (issue 17):

    cotrain    sim-mobile-transfer-cube: N mobile episodes alone against the same N co-trained with S static
               transfer-cube episodes (groups mobile 0.5 / static 0.5), same budget (the Mobile ALOHA experiment);
               the policy sees the head camera cam_high, played in the static group by its `top` camera;
               `--cotrain-variants unmasked` adds the run with the padded base actions kept in the loss
    augment    training-time image augmentation off / on, evaluated on the default view and on the shifted one
               (cameras moved ~3 cm / ~3 degrees, lights changed: hardware/sim/view.py)
    insertion  success against the training budget: one run per budget of --train-minutes / --train-steps

Every run goes through the pipeline as `aloha demo` does (the demo preset, covering placements, Dagster + MLflow in
the store), so each one is a run in the store's Dagster and MLflow UIs. The store keeps the recorded sessions: a
later run with the same episode counts reuses them (record once). The bench promotes its runs in its own store;
use a store of its own. Each budget is its own training run (the cosine schedule ends with its budget), so a point
of the insertion curve is what a run of that length reaches, not an early checkpoint of a longer one.

    python bench/bench_policy.py cotrain --store /data/bench --episodes 20 --static-episodes 50 --train-steps 8000
    python bench/bench_policy.py augment --store /data/bench --episodes 50 --train-minutes 20
    python bench/bench_policy.py insertion --store /data/bench --episodes 50 --train-minutes 15,30,45,60
    python bench/bench_policy.py all --store /tmp/b --episodes 4 --static-episodes 4 --train-steps 30 \\
        --eval-episodes 2 --episode-len 60          # a smoke run of every part: a few minutes

Ratios are against the baseline measured in the same run (alone, augmentation off, the smallest budget).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardware.sim.gl import select_gl_backend

select_gl_backend()  # before MuJoCo and torch load

from assets_store import StoreLayout  # noqa: E402
from assets_store.sessions import is_session_finalized  # noqa: E402
from metrics_table import print_metrics  # noqa: E402  (bench/ is the script's directory, so on sys.path)
from pipeline.demo import DemoOptions, demo_seeds, ingest, record_demo_session, run_config, train_and_deploy  # noqa: E402

PARTS = ("cotrain", "augment", "insertion")
MOBILE, STATIC = "mobile_transfer_cube", "transfer_cube"
# The mobile policy sees Mobile ALOHA's head camera: a room camera cannot see the rig until it nears the table, so the
# drive would be blind. The static scene's `top` camera plays cam_high in the static group, as static ALOHA's cam_high
# (fixed to the frame above the table) does beside Mobile ALOHA's head camera in the recipe.
MOBILE_CAMERA, STATIC_CAMERA = "cam_high", "top"
# alone: the N mobile episodes; cotrained: + the static ones, padded base actions out of the loss (the default);
# unmasked: the same, padded actions kept in the loss as the original code does (mask_padded_actions false)
COTRAIN_VARIANTS = ("alone", "cotrained", "unmasked")
RESULTS_FILE = "bench-policy-results.jsonl"  # in the store: every run's rows, appended


def cpu_description() -> str:
    """CPU model, the vector flags training speed depends on, and torch's view of them."""
    import torch

    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the model name from platform only
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags] or ["no avx2/avx512/amx"]
    return (f"{model}, {os.cpu_count()} CPUs, flags {' '.join(shown)}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, capability {torch.backends.cpu.get_cpu_capability()}")


@dataclass(frozen=True)
class Budget:
    minutes: float | None
    steps: int | None

    def __str__(self) -> str:
        return " or ".join(([f"{self.minutes:g} min"] if self.minutes is not None else [])
                           + ([f"{self.steps} steps"] if self.steps is not None else []))


@dataclass
class Result:
    part: str
    variant: str
    budget: str
    steps: int
    train_min: float
    val_loss: float
    success: dict[str, tuple[int, int]] = field(default_factory=dict)  # view -> (successes, episodes)

    def rate(self, view: str = "default") -> float:
        ok, n = self.success[view]
        return ok / n if n else float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace):
        from pipeline.instance import local_instance

        self.args = args
        self.layout = StoreLayout(Path(args.store).resolve())
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.instance = local_instance(self.layout)
        self.results: list[Result] = []

    def options(self, task: str, **changes: Any) -> DemoOptions:
        a = self.args
        return DemoOptions(task=task, resolution=a.resolution, episode_len=a.episode_len, eval_episodes=a.eval_episodes,
                           extra_evaluation_config={"videos": 0, "episode_len": a.episode_len}, **changes)

    def session(self, task: str, episodes: int, cameras: list[str] | None = None) -> str:
        """A validated session of `episodes` scripted episodes of `task`: recorded once, reused by later runs."""
        h, w = self.args.resolution
        name = "-".join(["bench", task.replace("_", "-"), f"{episodes}ep", f"{h}x{w}", *(cameras or [])]
                        + ([f"len{self.args.episode_len}"] if self.args.episode_len else []))
        opts = self.options(task, episodes=episodes, session=name, cameras=cameras)
        directory = self.layout.session_dir(name)
        if directory.exists():
            count = len(list(directory.glob("episode_*.zarr")))
            if not is_session_finalized(directory) or count != episodes:
                sys.exit(f"error: {directory}: an unfinished session ({count} of {episodes} episodes); remove it or "
                         "use another --store")
            print(f"  reusing session {name} ({episodes} episodes)", flush=True)
        else:
            seeds, note = demo_seeds(self.layout, opts)
            print(f"  recording session {name}: {note}", flush=True)
            t = time.perf_counter()
            record_demo_session(self.layout, opts, seeds=seeds)
            print(f"    {episodes} episodes in {(time.perf_counter() - t) / 60:.1f} min", flush=True)
        if not self.layout.session_summary_path(name).is_file():
            ingest(self.layout, name, opts, self.instance)
        return name

    def train(self, part: str, variant: str, opts: DemoOptions, budget: Budget) -> tuple[Result, str]:
        """One pipeline run (dataset, training, evaluation on the default view); its result and bundle."""
        opts.train_minutes, opts.train_steps = budget.minutes, budget.steps
        print(f"  {part}: {variant}, budget {budget}", flush=True)
        meta = train_and_deploy(self.layout, run_config(opts), self.instance, opts.model_name)
        trained, evaluated = meta["act_policy"], meta.get("policy_evaluation", {})
        result = Result(part, variant, str(budget), int(trained["steps"]), float(trained["wall_s"]) / 60,
                        float(trained["val_loss"]))
        if "successes" in evaluated:
            result.success["default"] = (int(evaluated["successes"]), int(evaluated["episodes"]))
        self.results.append(result)
        print(f"    {describe(result)}", flush=True)
        return result, str(trained["bundle_dir"])

    def evaluate(self, result: Result, bundle: str, task: str, view: str) -> None:
        """Success of a trained bundle on another view of the simulator (the same held-out seeds)."""
        from pipeline.assets.evaluation import EvaluationConfig, closed_loop_evaluation

        opts = self.options(task)
        config = EvaluationConfig(episodes=opts.eval_episodes, episode_len=opts.episode_len, videos=0,
                                  temporal_ensemble_k=opts.temporal_ensemble_k, sim_view=view)
        summary = closed_loop_evaluation(Path(bundle), opts.robot, config, opts.resolution).summary
        result.success[view] = (summary.successes, summary.episodes)
        print(f"    {view} view: {share(result.success[view])}", flush=True)

    def record_results(self) -> None:
        with open(self.layout.root / RESULTS_FILE, "a") as f:
            for r in self.results:
                f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **r.__dict__}) + "\n")


def share(success: tuple[int, int]) -> str:
    ok, n = success
    return f"{ok}/{n} = {ok / n:.0%}" if n else "n/a"


def describe(r: Result) -> str:
    views = ", ".join(f"{view} {share(s)}" for view, s in r.success.items()) or "no evaluation"
    return f"success {views}; val loss {r.val_loss:.4f}; {r.steps} steps in {r.train_min:.1f} min"


def ratio(new: float, base: float) -> str:
    return f"{new / base:.2f}x" if base > 0 else "n/a (baseline 0%)"


# ------------------------------------------------------------------------------------------------- parts
def bench_cotrain(bench: Bench, budgets: list[Budget]) -> list[tuple[str, str]]:
    a = bench.args
    variants = a.cotrain_variants
    mobile = bench.session(MOBILE, a.episodes, [MOBILE_CAMERA])
    groups = [{"name": "mobile", "sessions": [mobile], "weight": 0.5}]
    if set(variants) - {"alone"}:
        static = bench.session(STATIC, a.static_episodes)  # its default camera is `top`: the augment part's session
        groups.append({"name": "static", "sessions": [static], "weight": 0.5,
                       "cameras": {MOBILE_CAMERA: STATIC_CAMERA}})
    mixed = f"{a.episodes} mobile + {a.static_episodes} static"
    runs = {
        "alone": (f"{a.episodes} mobile alone", {"sessions": [mobile]}, {}),
        "cotrained": (mixed, {"groups": groups, "cameras": [MOBILE_CAMERA]}, {}),
        "unmasked": (f"{mixed}, padding in the loss", {"groups": groups, "cameras": [MOBILE_CAMERA]},
                     {"mask_padded_actions": False}),
    }
    rows = []
    for budget in budgets:
        done = {}
        for variant in variants:
            name, dataset, training = runs[variant]
            done[variant], _ = bench.train("cotrain", name, bench.options(
                MOBILE, dataset_config=dataset, extra_training_config=training), budget)
        rows += [(f"cotrain {budget}: {r.variant}", describe(r)) for r in done.values()]
        for variant in [v for v in ("cotrained", "unmasked") if v in done]:
            if "alone" in done:
                rows.append((f"cotrain {budget}: {variant} / alone (success)",
                             ratio(done[variant].rate(), done["alone"].rate())))
    return rows


def bench_augment(bench: Bench, budgets: list[Budget]) -> list[tuple[str, str]]:
    a = bench.args
    session = bench.session(a.augment_task, a.episodes)
    rows = []
    for budget in budgets:
        runs = []
        for augment in (False, True):
            result, bundle = bench.train("augment", f"augmentation {'on' if augment else 'off'}", bench.options(
                a.augment_task, dataset_config={"sessions": [session]},
                extra_training_config={"augment": augment}), budget)
            bench.evaluate(result, bundle, a.augment_task, "shifted")
            runs.append(result)
        off, on = runs
        rows += [(f"augment {budget}: {r.variant}", describe(r)) for r in runs]
        rows += [(f"augment {budget}: on / off, {view} view (success)", ratio(on.rate(view), off.rate(view)))
                 for view in ("default", "shifted")]
    return rows


def bench_insertion(bench: Bench, budgets: list[Budget]) -> list[tuple[str, str]]:
    session = bench.session("insertion", bench.args.episodes)
    results = [bench.train("insertion", f"{bench.args.episodes} episodes", bench.options(
        "insertion", dataset_config={"sessions": [session]}), budget)[0] for budget in budgets]
    rows = [(f"insertion {r.budget}", describe(r)) for r in results]
    rows += [(f"insertion {r.budget} / {results[0].budget} (success)", ratio(r.rate(), results[0].rate()))
             for r in results[1:]]
    return rows


def budgets_of(args: argparse.Namespace) -> list[Budget]:
    if args.train_minutes and args.train_steps:
        sys.exit("error: --train-minutes and --train-steps: give one of them (a list of budgets, one run each)")
    if args.train_steps:
        return [Budget(None, int(s)) for s in args.train_steps]
    return [Budget(m, None) for m in args.train_minutes or [DemoOptions.train_minutes]]


def number_list(kind: type):
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
        return values
    return parse


def variant_list(text: str) -> list[str]:
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in COTRAIN_VARIANTS]
    if not variants or unknown:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(COTRAIN_VARIANTS)}, got {text!r}")
    return list(dict.fromkeys(variants))


def resolution(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    try:
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, got {text!r}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", nargs="?", choices=[*PARTS, "all"],
                    help="the experiment; none: print this help and run nothing (`make bench`: they take hours)")
    ap.add_argument("--store", help="store of the bench (sessions, runs); reused between runs")
    ap.add_argument("--episodes", type=int, default=50, help="episodes of the task (cotrain: N mobile episodes)")
    ap.add_argument("--static-episodes", type=int, default=50, help="cotrain: static transfer-cube episodes")
    ap.add_argument("--cotrain-variants", type=variant_list, default=["alone", "cotrained"],
                    help=f"cotrain: comma-separated, of {', '.join(COTRAIN_VARIANTS)}; to run variants side by side, "
                         "give each process one variant and its own --store")
    ap.add_argument("--train-minutes", type=number_list(float), default=None,
                    help="training budget(s) in minutes, comma-separated: one run each (default: the demo's 20)")
    ap.add_argument("--train-steps", type=number_list(int), default=None,
                    help="training budget(s) in steps instead, comma-separated: one run each")
    ap.add_argument("--eval-episodes", type=int, default=50, help="held-out seeds per evaluation")
    ap.add_argument("--episode-len", type=int, default=None,
                    help="control steps per episode, recorded and evaluated (default: the task's; shorter: smoke runs)")
    ap.add_argument("--resolution", type=resolution, default=DemoOptions.resolution, help="camera HxW")
    ap.add_argument("--augment-task", default=STATIC, choices=("transfer_cube", "insertion"))
    args = ap.parse_args()
    if args.part is None:
        ap.print_help()
        print("\nbench_policy: no part given, nothing run (each experiment trains for tens of minutes)")
        return
    if args.store is None:
        ap.error("--store is required: the bench records its sessions there once and reuses them")
    if min(args.episodes, args.static_episodes) < 2 or args.eval_episodes < 1:
        sys.exit("error: --episodes and --static-episodes: at least 2 (a dataset splits off validation); "
                 "--eval-episodes: at least 1")
    budgets = budgets_of(args)
    bench = Bench(args)
    print(f"bench_policy on {cpu_description()}")
    print(f"store {bench.layout.root}, budgets {', '.join(map(str, budgets))}, {args.eval_episodes} held-out seeds",
          flush=True)
    parts = PARTS if args.part == "all" else (args.part,)
    run = {"cotrain": bench_cotrain, "augment": bench_augment, "insertion": bench_insertion}
    rows = []
    try:
        for part in parts:
            rows += run[part](bench, budgets)
    finally:
        bench.record_results()
    print_metrics(f"policy bench ({cpu_description()})", rows)
    print(f"results appended to {bench.layout.root / RESULTS_FILE}")


if __name__ == "__main__":
    main()
