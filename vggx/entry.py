"""The ``vggx`` command's entry point (pyproject's ``[project.scripts]``, and ``python -m vggx``).

Importing :mod:`vggx.cli` (Typer, Rich, the commands) takes a tenth of a second: a Ctrl-C in it is one line and exit
130, as it is once the CLI runs, not a traceback. It is held until the import is done rather than raised inside it:
a ``KeyboardInterrupt`` out of importlib's internals or out of an ``exec`` of a string (dataclasses makes its
``__init__`` so) can be printed as "Exception ignored", or make CPython (3.11) exit by SIGINT even once it is caught.
So this module imports nothing of its own before that ``try``."""

import sys


def main() -> None:
    held: list[int] = []  # a Ctrl-C while the CLI is imported

    def hold(signum, frame) -> None:
        if held:  # a second one: now (an import that hangs on a slow disk)
            raise KeyboardInterrupt
        held.append(signum)

    try:
        import signal

        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.default_int_handler:  # not where SIGINT is ignored (`vggx ... &` in a script)
            signal.signal(signal.SIGINT, hold)
        try:
            from vggx.cli import main as cli_main
        finally:
            signal.signal(signal.SIGINT, previous)  # runs a pending handler first: a Ctrl-C just now is held too
        if held:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        if _debug(sys.argv[1:]):  # the traceback, as the CLI gives it with --debug
            raise
        sys.stderr.write("error: interrupted\n")  # the CLI's words (uncoloured: Rich is not imported yet)
        sys.exit(130)
    try:
        cli_main()
    except SystemExit as exc:
        # The command is done and the process exits with its code: a Ctrl-C from here on (in the interpreter's
        # shutdown, as it joins threads) would only print "Exception ignored in threading._shutdown ...
        # KeyboardInterrupt" after the command's own output
        import threading

        if threading.current_thread() is threading.main_thread():  # (a caller's own thread: its signals are not ours)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if exc.code == 130:  # a Ctrl-C, said
            # Under `python -m`, CPython exits by SIGINT instead where the KeyboardInterrupt came out of an exec'd or
            # eval'd string (dataclasses' __init__, Typer reading string annotations), caught or not: the flag that
            # exec left is cleared by the next exec (pythonrun.c, run_eval_code_obj)
            exec("")
        raise


def _debug(args: list[str]) -> bool:
    """Whether ``--debug`` is among the options before the command's name (``vggx --debug upscale ...``), the only
    place the CLI takes it."""
    for arg in args:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False
