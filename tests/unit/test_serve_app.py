"""serve_apps/serve.py's pure parts: args, vLLM flags, builder options, request defaults.
(The engine itself runs in the e2e tier.)"""

import asyncio
import importlib.util
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from support.procs import REPO


@pytest.fixture(scope="module")
def serve_mod():
    spec = importlib.util.spec_from_file_location("rota_serve_app_under_test", REPO / "serve_apps" / "serve.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_building_does_not_import_vllm():
    # In a fresh interpreter: this test process may already have imported vLLM.
    code = (
        "import importlib.util,sys;"
        f"s=importlib.util.spec_from_file_location('m', r'{REPO / 'serve_apps' / 'serve.py'}');"
        "m=importlib.util.module_from_spec(s);sys.modules['m']=m;s.loader.exec_module(m);m.app({'model':'x'});"
        "assert 'vllm' not in sys.modules and 'torch' not in sys.modules, 'heavy import at build time'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_argv_maps_every_setting(serve_mod):
    cfg = serve_mod.LLMConfig(
        model="org/m",
        revision="abc",
        served_model_name="m",
        max_model_len=4096,
        max_num_seqs=32,
        max_num_batched_tokens=8192,
        dtype="bfloat16",
        tensor_parallel_size=2,
        gpu_memory_utilization=0.8,
        enable_prefix_caching=True,
        trust_remote_code=True,
        engine_args={"kv_cache_dtype": "fp8", "disable_log_stats": True},
    )
    argv = cfg.vllm_argv(enforce_eager=False)
    pairs = dict(a.split("=", 1) for a in argv if "=" in a)  # every value in its flag's token
    assert pairs["--model"] == "org/m" and pairs["--revision"] == "abc" and pairs["--served-model-name"] == "m"
    assert pairs["--max-model-len"] == "4096" and pairs["--max-num-seqs"] == "32" and pairs["--max-num-batched-tokens"] == "8192"
    assert (
        pairs["--dtype"] == "bfloat16" and pairs["--tensor-parallel-size"] == "2" and pairs["--gpu-memory-utilization"] == "0.8"
    )
    assert pairs["--distributed-executor-backend"] == "ray" and pairs["--kv-cache-dtype"] == "fp8"
    assert "--enable-prefix-caching" in argv and "--trust-remote-code" in argv and "--disable-log-stats" in argv
    assert "--enforce-eager" not in argv and "--enforce-eager" in cfg.vllm_argv(enforce_eager=True)


def test_argv_is_accepted_by_vllms_parser(serve_mod):
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cfg = serve_mod.LLMConfig(model="/m", max_model_len=256, max_num_seqs=4, enable_prefix_caching=False)
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(cfg.vllm_argv(enforce_eager=True))
    assert args.max_model_len == 256 and args.max_num_seqs == 4 and args.enforce_eager and args.enable_prefix_caching is False


@pytest.mark.parametrize(
    "args,field",
    [
        ({}, "model"),
        ({"model": "m", "max_num_seqs": 0}, "max_num_seqs"),
        ({"model": "m", "dtype": "int3"}, "dtype"),
        ({"model": "m", "gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"model": "m", "maxlen": 3}, "maxlen"),
    ],
)
def test_bad_args_name_the_field(serve_mod, args, field):
    with pytest.raises(ValidationError) as e:
        serve_mod.app(args)
    assert e.value.errors()[0]["loc"][0] == field


def test_max_input_length_cannot_exceed_context(serve_mod):
    with pytest.raises(ValidationError, match="exceeds max_model_len"):
        serve_mod.LLMConfig(model="m", max_model_len=128, max_input_length=256)


def test_tensor_parallel_gets_a_gpu_per_worker(serve_mod):
    deployment = serve_mod.app({"model": "m", "tensor_parallel_size": 4})._bound_deployment
    opts, bundles = deployment._deployment_config, deployment._replica_config.placement_group_bundles
    assert bundles == [{"CPU": 1}] + [{"GPU": 1}] * 4
    assert opts.max_ongoing_requests == 64


def test_request_defaults_fill_only_missing_fields(serve_mod):
    seen = {}

    async def inner(scope, receive, send):
        msg = await receive()
        seen["body"] = json.loads(msg["body"])
        seen["len"] = dict(scope["headers"])[b"content-length"]

    mw = serve_mod.RequestDefaults(inner, {"skip_special_tokens": False, "add_special_tokens": True})
    body = json.dumps({"model": "m", "add_special_tokens": False}).encode()
    msgs = [
        {"type": "http.request", "body": body[:5], "more_body": True},
        {"type": "http.request", "body": body[5:], "more_body": False},
    ]

    async def receive():
        return msgs.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/t/v1/chat/completions", "headers": [(b"content-length", b"1")]}
    asyncio.run(mw(scope, receive, None))
    assert seen["body"] == {"model": "m", "add_special_tokens": False, "skip_special_tokens": False}
    assert int(seen["len"]) == len(json.dumps(seen["body"]).encode())


def test_every_route_needs_the_endpoints_token(serve_mod):
    reached = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = serve_mod.TokenGuard(inner, "tok")

    def call(path, auth=None):
        sent = []

        async def send(m):
            sent.append(m)

        headers = [(b"authorization", auth)] if auth else []
        asyncio.run(guard({"type": "http", "path": path, "headers": headers}, None, send))
        return sent[0]["status"]

    for path in ("/v1/chat/completions", "/invocations", "/tokenize", "/metrics", "/health", "/"):
        assert call(path) == 401 and call(path, b"Bearer other") == 401 and call(path, b"tok") == 401
        assert call(path, b"Bearer tok") == 200
    assert reached == ["/v1/chat/completions", "/invocations", "/tokenize", "/metrics", "/health", "/"]


@pytest.mark.parametrize(
    "args",
    [{"model": "rota:tiny"}, {"model": "org/m", "model_source": "generated"}, {"model": "rota:tiny", "model_source": "hub"}],
)
def test_only_the_tiny_model_is_generated_and_it_always_is(serve_mod, args):
    with pytest.raises(ValueError, match="generated"):
        serve_mod.LLMConfig(**args)
    assert serve_mod.LLMConfig(model="rota:tiny", model_source="generated").model == "rota:tiny"


def test_where_the_model_is_is_said_not_guessed(serve_mod):
    assert serve_mod._local(serve_mod.LLMConfig(model="org/m", model_source="local")) is True
    assert serve_mod._local(serve_mod.LLMConfig(model="/models/m", model_source="hub")) is False
    assert serve_mod._local(serve_mod.LLMConfig(model="../x")) is True  # auto, for direct users of serve:app
    assert serve_mod.ROTA_TOKEN_ARG == "api_key" and "--api-key" not in serve_mod.LLMConfig(model="m", api_key="t").vllm_argv(
        True
    )


def test_every_engine_flag_ordinary_keys_may_set_is_one_vllm_knows():
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from rota.domain.policy import ENGINE_ARGS_ALLOWED

    known = {a.dest for a in make_arg_parser(FlexibleArgumentParser())._actions}
    assert sorted(ENGINE_ARGS_ALLOWED - known) == []


@pytest.mark.parametrize("field", ["served_model_name", "revision"])
def test_a_value_can_never_become_a_flag(serve_mod, field):
    with pytest.raises(ValidationError):
        serve_mod.LLMConfig(model="a/b", **{field: "--trust-remote-code.x"})
