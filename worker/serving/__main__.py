"""`python -m worker.serving --base-model NAME --port 8100`: the built-in engine for one registered base model."""

from __future__ import annotations

import argparse
import logging
import socket

from core.registry import load_registry
from core.settings import get_settings
from core.storage import configured_store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.serving", description=__doc__)
    parser.add_argument("--base-model", required=True, help="a model name of the registry")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--url", default="", help="where the API reaches it (default http://HOST:PORT)")
    parser.add_argument("--id", default="", help="stable backend id (default serving-<host>-<port>)")
    parser.add_argument("--max-adapters", type=int, default=None, help="default TUNEPOOL_SERVING_MAX_ADAPTERS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = get_settings()
    model = load_registry(settings.resolved_model_registry).get(args.base_model)
    if model is None:
        parser.error(f"{args.base_model!r} is not in the model registry {settings.resolved_model_registry}")
    # Heavy imports after the arguments parse: `--help` answers without loading torch.
    from worker.serving.app import create_app
    from worker.serving.engine import Engine
    from worker.serving.registration import Registration
    from worker.training.config import resolve_device

    device = resolve_device(settings.device)
    max_adapters = args.max_adapters or settings.serving_max_adapters
    engine = Engine(model.name, model.source, device, max_adapters, settings.serving_max_new_tokens)
    cache = settings.resolved_work_dir / "serving" / f"{socket.gethostname()}-{args.port}"
    app = create_app(engine, configured_store(settings), cache)
    url = args.url or f"http://{'127.0.0.1' if args.host == '0.0.0.0' else args.host}:{args.port}"
    Registration(
        args.id or f"serving-{socket.gethostname()}-{args.port}",
        model.name,
        url,
        "builtin",
        device,
        max_adapters,
        engine.loaded,
        settings.heartbeat_seconds,
    ).serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
