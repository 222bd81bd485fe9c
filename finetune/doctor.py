"""What `python -m eval.doctor` reports for the SFT track: which of its backends can run here (eval/tracks.py's
`doctor_checks`; docs/gpu-paths.md)."""

from __future__ import annotations

import importlib.util

from eval.doctor import NO, OK, Check


def doctor_checks(facts: dict) -> list[Check]:
    """The SFT backends on this machine: unsloth (CUDA) and bitsandbytes (4-bit, the 8-bit optimizer); `facts`
    from eval.doctor.torch_checks."""
    cuda = bool(facts.get("cuda"))
    out = []
    if importlib.util.find_spec("unsloth") is None:
        out.append(Check(NO, "unsloth", "not installed: SFT uses the hf backend (transformers + peft)",
                         "on a CUDA machine: pip install -e '.[unsloth]'" if cuda else ""))
    elif not cuda:
        # not imported here: importing unsloth patches transformers/TRL (docs/unsloth-cpu.md)
        from finetune.backends import UNSLOTH_CPU_TESTED, _version_tuple, unsloth_version

        version = unsloth_version() or "?"
        if version != "?" and _version_tuple(version) >= _version_tuple(UNSLOTH_CPU_TESTED):
            out.append(Check(OK, "unsloth", f"{version} installed, no GPU: its CPU backend trains text LoRA when "
                                            "asked for (--backend unsloth; no 4-bit, GGUF needs a llama.cpp build); "
                                            "--backend auto uses hf here"))
        else:
            out.append(Check(NO, "unsloth", f"{version} installed, no GPU: releases before {UNSLOTH_CPU_TESTED} (the "
                                            "first this suite ran on CPU) need CUDA; SFT uses the hf backend",
                             f"pip install -U 'unsloth>={UNSLOTH_CPU_TESTED}' for its CPU backend"))
    else:
        from finetune.backends import unsloth_import_error

        reason = unsloth_import_error()
        out.append(Check(OK, "unsloth", "imports; --backend auto uses it") if reason is None else
                     Check(NO, "unsloth", reason, "pip install -U -e '.[unsloth]' (or use --backend hf)"))
    if importlib.util.find_spec("bitsandbytes") is None:
        out.append(Check(NO, "bitsandbytes", "not installed: no 4-bit on the hf backend, torch AdamW instead of "
                                             "adamw_8bit", "pip install bitsandbytes" if cuda else ""))
    elif cuda:
        from finetune.backends import bitsandbytes_error

        reason = bitsandbytes_error()
        out.append(Check(OK, "bitsandbytes", "imports") if reason is None else
                   Check(NO, "bitsandbytes", f"does not import ({reason})", "reinstall bitsandbytes for your CUDA"))
    else:
        out.append(Check(OK, "bitsandbytes", "installed (4-bit needs CUDA, so it is unused here)"))
    return out
