"""Entry point of one benchmark child: ``python -m tests.bench.child SYSTEM SCENARIO PARAMS RESULT``.

Imports only the system under test, and only inside the scenario function, so that import time is
measured from a clean interpreter. Writes a JSON object of figures to RESULT; a scenario that cannot
run because the system (or a runstream piece) is missing writes ``{"not_built": reason}`` or
``{"not_installed": reason}``.
"""

from __future__ import annotations

import json
import resource
import sys
import traceback
from typing import Any

from .errors import NotApplicable, NotBuilt, NotInstalled


def main(argv: list[str]) -> int:
    system, scenario, params_json, result_path = argv
    params: dict[str, Any] = json.loads(params_json)
    if system == "runstream":
        from . import rs as module
    else:
        from . import peers as module
    func = getattr(module, f"{scenario}")
    out: dict[str, Any]
    rc = 0
    try:
        out = func(system, params) if system != "runstream" else func(params)
    except NotBuilt as e:
        out = {"not_built": str(e)}
    except NotInstalled as e:
        out = {"not_installed": str(e)}
    except NotApplicable as e:
        out = {"not_applicable": str(e)}
    except Exception as e:
        traceback.print_exc()
        out = {"error": f"{type(e).__name__}: {e}"}
        rc = 1
    out["_self_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(result_path, "w") as fh:
        json.dump(out, fh)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
