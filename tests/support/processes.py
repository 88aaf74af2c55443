"""Helpers for tests that start a plugin process (policy pack, component provider)."""

import subprocess


def stop(process: subprocess.Popen) -> None:
    """Terminate, then kill if it does not exit within 10 s; close its pipes."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
