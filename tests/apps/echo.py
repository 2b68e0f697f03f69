"""A small non-LLM Ray Serve application for the control-plane tests.

`app` is an application builder: `args` are passed by Ray Serve (and by Rota's
validation). Each reply names the replica that served it, so tests can check that a
rescale kept the running replicas.
"""

from ray import serve
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Echo:
    def __init__(self, greeting: str):
        self.greeting = greeting
        self.replica = serve.get_replica_context().replica_id.unique_id

    async def __call__(self, request: Request) -> dict:
        return {"greeting": self.greeting, "replica": self.replica, "path": request.url.path}


def app(args: dict):
    if "fail" in args:
        raise_on_start = args["fail"]
        return Broken.bind(raise_on_start)
    return Echo.bind(args.get("greeting", "hello"))


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Broken:
    def __init__(self, reason: str):
        raise RuntimeError(reason)

    async def __call__(self, request: Request) -> dict:  # pragma: no cover - never constructed
        return {}


not_an_app = 42
