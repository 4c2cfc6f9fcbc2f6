"""`rlvr` command line: one subcommand per job, each a thin call into its module.

Every subcommand's module exposes `main(argv: list[str]) -> int`; imports are lazy
so `rlvr serve` never imports torch and `rlvr --help` is instant.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help). A plain dict: add a line to add a subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("reward_server.main", "start the reward server (FastAPI under uvicorn)"),
    "train": ("rlvr.train", "GRPO training: rlvr train CONFIG [key=value ...]"),
    "sft": ("rlvr.sft", "supervised warm start: rlvr sft CONFIG [key=value ...]"),
    "eval": ("rlvr.eval", "pass@k / maj@k / avg@n evaluation of a model on a dataset"),
    "train-rm": ("rlvr.reward_model", "train a Bradley-Terry reward model on preference pairs"),
    "demo": ("rlvr.demo", "the end-to-end demo on the embedded tiny model"),
}


def _usage() -> str:
    lines = ["usage: rlvr COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `rlvr COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rlvr: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
