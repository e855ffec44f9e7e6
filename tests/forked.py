"""Run a script the way a test worker's subprocesses can run: forked from a large process."""
import subprocess
import sys
import textwrap

# Runs a script as a child forked (not vfork'd) from a process holding 512 MiB, as a test
# worker's subprocesses can be: getrusage's peak then starts at the parent's size and never
# resets (the peak of the map that exec replaced), the map's own high-water mark does.
FORKED = textwrap.dedent('''
    import os, sys
    import torch
    held = torch.ones(512 * 2**20 // 4)
    child = os.fork()
    if child == 0:
        os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
    _, status = os.waitpid(child, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
''')


def run_forked_from_a_large_process(*arguments: str) -> str:
    """The stdout of ``python ARGUMENTS`` run as FORKED runs it."""
    return subprocess.run([sys.executable, '-c', FORKED, *arguments], capture_output=True,
                          text=True, check=True).stdout
