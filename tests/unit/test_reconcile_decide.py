"""The reconciler's pure decide step and state derivation."""

from rota.domain.reconcile import AppSpec, AppState, Observation, ObservedApp, decide, observe_app, state_events
from rota.domain.status import AppStatus, EventKind


def spec(name="a", lo=1, hi=1, **kw):
    return AppSpec(name=name, import_path="echo:app", ingress="Echo", min_replicas=lo, max_replicas=hi, **kw)


def observed(s: AppSpec, status="RUNNING", replicas=("r1",), cfg=None):
    return ObservedApp(s.name, status, "", cfg if cfg is not None else s.to_serve_config(), len(replicas), tuple(replicas))


def test_in_sync_means_no_put():
    s = spec()
    assert decide([s], Observation(True, {"a": observed(s)})).put is False


def test_missing_app_is_put():
    d = decide([spec()], Observation(True, {}))
    assert d.put and "a: missing" in d.reasons and d.missing == {"a"}


def test_changed_bounds_is_put():
    d = decide([spec(lo=3, hi=3)], Observation(True, {"a": observed(spec())}))
    assert d.put and "a: config differs (deployments)" in d.reasons


def test_numbers_ray_hands_back_as_floats_still_match():
    # Ray Serve stores {"num_cpus": 1} and {"target_ongoing_requests": 8} as 1.0 and 8.0;
    # a mismatch there would PUT (and reset the autoscaler) on every tick.
    s = spec(ray_actor_options={"num_cpus": 1}, autoscaling={"target_ongoing_requests": 8, "downscale_delay_s": 300},
             args={"max_num_seqs": 16})  # fmt: skip
    cfg = s.to_serve_config()
    cfg["deployments"][0]["ray_actor_options"]["num_cpus"] = 1.0
    cfg["deployments"][0]["autoscaling_config"].update(target_ongoing_requests=8.0, downscale_delay_s=300.0)
    cfg["args"]["max_num_seqs"] = 16.0
    assert decide([s], Observation(True, {"a": observed(s, cfg=cfg)})).put is False
    cfg["deployments"][0]["autoscaling_config"]["downscale_delay_s"] = 1.0
    assert decide([s], Observation(True, {"a": observed(s, cfg=cfg)})).reasons == ("a: config differs (deployments)",)


def test_changed_env_is_put():
    d = decide([spec(env={"X": "1"})], Observation(True, {"a": observed(spec())}))
    assert d.put


def test_extra_app_is_removed_by_put():
    d = decide([], Observation(True, {"old": observed(spec("old"))}))
    assert d.put and "old: not desired" in d.reasons


def test_failed_app_with_same_config_is_not_resent():
    s = spec()
    assert decide([s], Observation(True, {"a": observed(s, status="DEPLOY_FAILED", replicas=())})).put is False


def test_unreachable_never_puts():
    assert decide([spec()], Observation(False, {}, "down")).put is False


def test_bounds_always_as_autoscaling_config():
    cfg = spec(lo=2, hi=2).to_serve_config()
    dep = cfg["deployments"][0]
    assert dep["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 2} and "num_replicas" not in dep
    assert cfg["route_prefix"] == "/a" and cfg["import_path"] == "echo:app"


def test_ray_echoing_extra_defaults_still_matches():
    s = spec(ray_actor_options={"num_cpus": 0.5})
    cfg = s.to_serve_config()
    cfg["deployments"][0]["autoscaling_config"]["initial_replicas"] = None
    cfg["deployments"][0]["ray_actor_options"]["num_gpus"] = None
    assert decide([s], Observation(True, {"a": observed(s, cfg=cfg)})).put is False


def test_observe_states():
    s = spec()
    prev = AppState(AppStatus.RUNNING, None, 1, ("r1",))
    assert observe_app(s, Observation(True, {"a": observed(s)}), prev).status is AppStatus.RUNNING
    assert observe_app(s, Observation(True, {}), prev).status is AppStatus.DEPLOYING
    down = observe_app(s, Observation(False, {}, "refused"), prev)
    assert down.status is AppStatus.UNREACHABLE and down.message == "refused" and down.running_replica_ids == ("r1",)
    stale = observe_app(spec(lo=2, hi=2), Observation(True, {"a": observed(s)}), prev)
    assert stale.status is AppStatus.DEPLOYING
    assert observe_app(None, Observation(True, {}), prev).status is AppStatus.NOT_DEPLOYED


def test_state_events():
    run = AppState(AppStatus.RUNNING, None, 2, ("r1", "r2"))
    dep = AppState(AppStatus.DEPLOYING, None, None, ())
    assert [e.kind for e in state_events(dep, run)] == [EventKind.RUNNING]
    assert state_events(run, run) == []
    down = AppState(AppStatus.UNREACHABLE, "refused", 2, ("r1", "r2"))
    assert [e.kind for e in state_events(run, down)] == [EventKind.UNREACHABLE]
    assert [e.kind for e in state_events(down, run)] == [EventKind.RECOVERED]
    assert [e.kind for e in state_events(down, dep)] == [EventKind.RECOVERED]
    failed = AppState(AppStatus.DEPLOY_FAILED, "boom", 0, ())
    ev = state_events(dep, failed)
    assert ev[0].kind is EventKind.FAILED and "boom" in ev[0].message


def test_running_needs_its_route():
    s = spec()
    prev = AppState(AppStatus.DEPLOYING, None, None, ())
    waiting = observe_app(s, Observation(True, {"a": observed(s)}, routes={}), prev)
    assert waiting.status is AppStatus.DEPLOYING and "waiting for its route /a" in waiting.message
    down = observe_app(s, Observation(True, {"a": observed(s)}, routes_error="refused"), prev)
    assert down.status is AppStatus.DEPLOYING and "refused" in down.message
    assert observe_app(s, Observation(True, {"a": observed(s)}, routes={"/a": "a"}), prev).status is AppStatus.RUNNING
