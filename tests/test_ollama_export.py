"""What Ollama does with an SFT export (issue 20), checked against ported Ollama rules (tests/ollama_rules.py: ollama
parser/parser.go, server/images.go `shouldPreferChatTemplate`, server/routes.go `shouldUseGoTemplate`) on real GGUF
metadata (gguf-py): the GGUFs the unsloth stand-in writes carry Qwen3's chat template and add_bos_token, as
unsloth's export (llama.cpp's convert_hf_to_gguf.py) does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytest.importorskip("gguf")

from fake_unsloth import QWEN3_CHAT_TEMPLATE, _write_gguf, make_fake_unsloth  # noqa: E402
from ollama_rules import gguf_chat_template, parse_modelfile, template_source  # noqa: E402

from eval.lm.models import resolve  # noqa: E402
from finetune import backends  # noqa: E402
from finetune.config import SFTArgs  # noqa: E402

PROMPT = "<s>user : Classify as negative or positive: {{ .Prompt }} </s> assistant :"


@pytest.fixture
def cuda_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def _export(monkeypatch: pytest.MonkeyPatch, tiny: Path, tmp_path: Path, **fake_kw) -> dict:
    from finetune.export import export_after_record, save_adapter

    monkeypatch.setitem(sys.modules, "unsloth", make_fake_unsloth(tiny, **fake_kw))
    loaded = backends.load(resolve("qwen3-4b"), "unsloth", load_in_4bit=True, max_seq_length=64,
                           lora=SFTArgs().lora(), seed=0)
    out = tmp_path / "artifacts"
    record = tmp_path / "run.json"
    record.write_text(json.dumps({"run_id": "r", "details": {"artifacts": save_adapter(loaded, out)}}))
    done = export_after_record(loaded, out, record, gguf="q4_k_m", modelfile_prompt=PROMPT,
                               stop=["</s>", "<|im_end|>"])
    assert "gguf_error" not in done, done
    return done


def test_the_exported_model_renders_the_sft_prompt_in_ollama(monkeypatch, tiny_causal_lm: Path, cuda_here,
                                                             tmp_path: Path) -> None:
    done = _export(monkeypatch, tiny_causal_lm, tmp_path)
    gguf_file, modelfile = Path(done["gguf"]), Path(done["modelfile"])
    # the rule bites: our Modelfile next to the GGUF as unsloth writes it (Qwen3's template: tools, <think>) would
    # be served with the GGUF's chat template, i.e. without the SFT instruction and label list
    as_written = tmp_path / "as-written"
    as_written.mkdir()
    _write_gguf(as_written / gguf_file.name, chat_template=QWEN3_CHAT_TEMPLATE, add_bos=True)
    (as_written / "Modelfile").write_text(modelfile.read_text())
    assert template_source(as_written / "Modelfile") == "gguf_chat_template"
    # the export: the chat template is gone from the GGUF (the rest kept), so our TEMPLATE is what renders
    assert gguf_chat_template(gguf_file) == "" and done["gguf_removed_metadata"] == ["tokenizer.chat_template"]
    assert template_source(modelfile) == "go_template"
    import gguf

    reader = gguf.GGUFReader(gguf_file, "r")
    assert [t.name for t in reader.tensors] == ["token_embd.weight"]
    assert reader.get_field(gguf.Keys.General.ARCHITECTURE).contents() == "qwen3"
    template = dict(parse_modelfile(modelfile.read_text()))["template"]
    assert template == PROMPT.removeprefix("<s>")  # add_bos_token is true: Ollama adds BOS itself


@pytest.mark.parametrize("add_bos", [True, False, None])
def test_the_literal_bos_is_dropped_only_when_the_gguf_adds_one(monkeypatch, tiny_causal_lm: Path, cuda_here,
                                                               tmp_path: Path, add_bos: bool | None) -> None:
    """Ollama's runner prepends BOS only when the GGUF's tokenizer.ggml.add_bos_token says so; otherwise the literal
    one in the template is the only BOS the model sees, as in training (finetune/formatting.py)."""
    done = _export(monkeypatch, tiny_causal_lm, tmp_path, add_bos=add_bos)
    template = dict(parse_modelfile(Path(done["modelfile"]).read_text()))["template"]
    assert done["gguf_add_bos_token"] is bool(add_bos)
    assert template == (PROMPT.removeprefix("<s>") if add_bos else PROMPT)


def test_stop_strings_come_back_from_ollamas_parser_as_written() -> None:
    """ollama's parser (parser/parser.go `unquote`) strips one pair of quotes and undoes no escapes: a stop string
    with a quote or a backslash was written escaped and reached Ollama with the backslashes in it."""
    stops = ["</s>", "<|im_end|>", 'say "done"', "C:\\path", "<end_of_turn>"]
    text = backends.ollama_modelfile("m.gguf", "x {{ .Prompt }}", stop=stops)
    parsed = parse_modelfile(text)
    assert [a for c, a in parsed if c == "stop"] == stops
    assert dict(parsed)["template"] == "x {{ .Prompt }}" and dict(parsed)["model"] == "./m.gguf"
    with pytest.raises(ValueError, match='cannot contain """'):
        backends.ollama_modelfile("m.gguf", "x {{ .Prompt }}", stop=['a"""b'])
