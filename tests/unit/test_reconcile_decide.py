"""The reconciler's pure steps: screen the specs, decide whether to PUT; and the specs."""

import pytest

from rota.domain.reconcile import Observation, ObservedApp, decide, screen
from rota.domain.specs import GATEWAY_VERSION, AppSpec, Bounds, EndpointState, endpoint_spec, gateway_spec


def spec(name="a", lo=1, hi=1, route=None, **kw):
    return AppSpec(
        name=name,
        route_prefix=route or f"/{name}",
        import_path="echo:app",
        ingress="Echo",
        min_replicas=lo,
        max_replicas=hi,
        **kw,
    )


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
    s = spec(
        ray_actor_options={"num_cpus": 1},
        autoscaling={"target_ongoing_requests": 8, "downscale_delay_s": 300},
        args={"max_num_seqs": 16},
    )
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


def test_kept_applications_are_not_removed():
    d = decide([], Observation(True, {"old": observed(spec("old"))}), keep=frozenset({"old"}))
    assert d.put is False


def test_one_clash_does_not_stop_the_others():
    gw, a, clash_name, clash_route = spec("gw", route="/"), spec("a"), spec("a", route="/x"), spec("b", route="/a")
    ok, rejected = screen([gw, a, clash_name, clash_route, spec("c")])
    assert [s.name for s in ok] == ["gw", "a", "c"]
    assert "already named 'a'" in rejected["a"] and "route /a" in rejected["b"]


def state(**kw):
    base = dict(
        id=1,
        app_name="ep-1",
        route_prefix="/ep/1",
        import_path="serve:app",
        ingress="LLMServer",
        desired="running",
        bounds=Bounds(0, 2, "scaling"),
        args={"model": "m"},
        env={},
        resources={},
        per_replica=8,
        cooldown_s=60.0,
    )
    return EndpointState(**{**base, **kw})


def test_an_endpoint_spec_carries_its_own_token_and_policy():
    s = endpoint_spec(state(token="tok", token_arg="api_key"), report_url="http://cp/internal/v1/phase")
    assert s.args == {"model": "m", "api_key": "tok", "report_url": "http://cp/internal/v1/phase"}
    auto = s.to_serve_config()["deployments"][0]["autoscaling_config"]
    assert auto == {
        "min_replicas": 0,
        "max_replicas": 2,
        "initial_replicas": 1,
        "target_ongoing_requests": 4,
        "downscale_delay_s": 60.0,
        "downscale_to_zero_delay_s": 60.0,
    }
    assert endpoint_spec(state(token="tok")).args == {"model": "m"}  # an application that takes no token gets none
    assert endpoint_spec(state(bounds=None)) is None and endpoint_spec(state(desired="stopped")) is None


def test_the_gateway_is_one_replica_by_default_and_autoscales_between_its_bounds():
    gw = gateway_spec("http://cp", "t", 8000, 1.0, 300.0, 1 << 20).to_serve_config()
    assert gw["route_prefix"] == "/" and gw["deployments"][0]["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 1}
    scaled = gateway_spec("http://cp", "t", 8000, 1.0, 300.0, 1 << 20, replicas=(2, 4), target_ongoing=32).to_serve_config()
    assert scaled["deployments"][0]["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 4, "target_ongoing_requests": 32}
    with pytest.raises(ValueError, match="min 3 > max 2"):
        gateway_spec("http://cp", "t", 8000, 1.0, 300.0, 1 << 20, replicas=(3, 2))
    # The request log's switch reaches the gateway through the routing table, not its arguments (no roll);
    # its version does, so an upgrade that changes what it expects of the control plane rolls it once.
    assert "request_log" not in gw["args"] and gw["args"]["version"] == GATEWAY_VERSION


def test_a_gateway_deployed_with_the_request_logs_old_argument_still_starts():
    from support.gateway import gateway

    cfg = gateway.GatewayConfig(control_url="http://cp", token="t", request_log=False)
    assert "request_log" not in cfg.model_dump()  # accepted, unused: the routing table says


def test_gateway_replica_bounds_out_of_order_are_refused_naming_both_settings(monkeypatch):
    from rota.config import Settings

    monkeypatch.setenv("ROTA_GATEWAY_MIN_REPLICAS", "3")
    monkeypatch.setenv("ROTA_GATEWAY_MAX_REPLICAS", "2")
    with pytest.raises(ValueError, match="ROTA_GATEWAY_MIN_REPLICAS .3. is above ROTA_GATEWAY_MAX_REPLICAS .2."):
        Settings()
