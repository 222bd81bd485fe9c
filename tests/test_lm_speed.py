"""Speed paths that must not change answers: shared-prefix KV reuse, multi-token verbalizers in one pass, the batch
canary / dtype guard, and the dtype / thread decisions (eval/lm/infer.py, eval/lm/canary.py, eval/run/hardware.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from eval.lm.canary import AutocastSwitch, CastSwitch, run_canary  # noqa: E402
from eval.lm.causal import build_prompt, candidate_ids, encode, generate, load_causal_lm, score_labels  # noqa: E402
from eval.lm.infer import MIN_PREFIX, RESCORE_FACTOR, RESCORE_FLOOR, RESCORE_RULE, shared_prefix  # noqa: E402
from eval.run import hardware  # noqa: E402

SYSTEM = ("you are a helpful classifier review sentiment positive negative neutral answer the movie was great and "
          "the acting was good i loved it a wonderful story")
INPUTS = ["the movie was great", "i hated it a boring story with awful music and the plot was bad", "okay",
          "very good", "the story", "it was fine nothing special", "terrible"]


@pytest.fixture(scope="module")
def tiny(tiny_causal_lm: Path):
    model, tok, _ = load_causal_lm(str(tiny_causal_lm), dtype="float32")
    prompts = [build_prompt(tok, x, system=SYSTEM) for x in INPUTS]  # a long shared system turn
    return model, tok, prompts


def test_prefix_reuse_generates_the_same_text(tiny) -> None:
    model, tok, prompts = tiny
    for bs in (1, 3, 8):
        stats: dict = {}
        plain = generate(model, tok, prompts, max_new_tokens=6, batch_size=bs, reuse_prefix=False)
        reused = generate(model, tok, prompts, max_new_tokens=6, batch_size=bs, reuse_prefix=True, stats=stats)
        assert reused == plain
        assert stats["prefix_tokens"] >= MIN_PREFIX  # the reuse really ran
    assert len(set(plain)) > 2  # outputs differ per prompt, so equality means something


@pytest.mark.parametrize("cands", [["positive", "negative", "neutral"], ["very good", "very bad", "okay"]])
def test_prefix_reuse_scores_the_same(tiny, cands: list[str]) -> None:
    model, tok, prompts = tiny
    stats: dict = {}
    plain = torch.tensor(score_labels(model, tok, prompts, cands, batch_size=3, reuse_prefix=False))
    reused = torch.tensor(score_labels(model, tok, prompts, cands, batch_size=3, stats=stats))  # auto
    assert stats["prefix_tokens"] >= MIN_PREFIX
    assert torch.allclose(plain, reused, atol=1e-4) and plain.argmax(1).tolist() == reused.argmax(1).tolist()


def test_shared_prefix_skips_the_output_layer(tiny) -> None:
    """The prefix's cache comes from the decoder alone: no vocabulary-sized product for a logit nobody reads."""
    model, tok, prompts = tiny
    calls: list[int] = []
    handle = model.get_output_embeddings().register_forward_hook(lambda *_: calls.append(1))
    try:
        prefix = shared_prefix(model, [encode(tok, p) for p in prompts])
    finally:
        handle.remove()
    assert prefix is not None and len(prefix.ids) >= MIN_PREFIX and calls == []


def test_multi_token_scores_equal_one_full_forward(tiny) -> None:
    """The cached two-pass scoring equals log p(candidate | prompt) from a single forward of prompt + candidate."""
    model, tok, prompts = tiny
    cands = ["very good", "very bad", "okay"]
    got = score_labels(model, tok, prompts, cands, batch_size=4, method="full")
    for p, row in zip(prompts, got):
        for c, value in zip(cands, row):
            ids, cont = encode(tok, p), candidate_ids(tok, p, c)
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids + cont])).logits[0].float().log_softmax(-1)
            ref = sum(float(logits[len(ids) - 1 + j, t]) for j, t in enumerate(cont))
            assert value == pytest.approx(ref, abs=1e-4)


def test_prefix_is_skipped_when_short_or_beyond_a_sliding_window(tiny) -> None:
    model, tok, prompts = tiny
    rows = [encode(tok, p) for p in prompts]
    assert shared_prefix(model, [r[-5:] for r in rows]) is None  # nothing shared
    assert shared_prefix(model, rows, reuse=False) is None
    assert shared_prefix(model, rows[:1]) is None  # one prompt: nothing to share with
    model.config.sliding_window = 8  # a window the padded batch could exceed: pads would move it
    try:
        assert shared_prefix(model, rows) is None
    finally:
        del model.config.sliding_window


def test_canary_falls_back_to_a_batch_size_that_agrees() -> None:
    """A stand-in for unsloth before PR #4100: padded rows come back as garbage when the batch has > 2 rows."""
    truth = [f"label{i % 3}" for i in range(16)]

    def predict(sub, bs):
        return [t if bs <= 2 else "garbage" for t in truth[:len(sub)]]

    warnings: list[str] = []
    rec = run_canary(predict, [str(i) for i in range(40)], 16, say=warnings.append)
    assert rec["ran"] and rec["k"] == 16 and rec["batch_size_used"] == 2 and not rec["agreed"]
    assert [c["batch_size"] for c in rec["batch_checks"]] == [16, 8, 4, 2] and len(warnings) == 3
    assert run_canary(predict, ["x"] * 4, 16, enabled=False)["batch_size_used"] == 16  # --no-batch-check
    ok = run_canary(lambda sub, bs: truth[:len(sub)], ["x"] * 20, 8)
    assert ok["agreed"] and ok["batch_size_used"] == 8


class _Switch:
    low_name, high_name = "bfloat16", "float32"

    def __init__(self) -> None:
        self.state = "low"

    def low(self) -> None:
        self.state = "low"

    def high(self) -> None:
        self.state = "high"


def test_dtype_guard_uses_fp32_when_bf16_disagrees() -> None:
    switch = _Switch()
    flips = {3}
    rec = run_canary(lambda sub, bs: [("b" if switch.state == "low" and i in flips else "a") for i in range(len(sub))],
                     ["x"] * 10, 4, precision=switch, say=lambda m: None)
    assert rec["dtype_used"] == "float32" and switch.state == "high" and rec["dtype_check"]["mismatches"] == 1
    flips.clear()
    rec = run_canary(lambda sub, bs: ["a"] * len(sub), ["x"] * 10, 4, precision=switch)
    assert rec["dtype_used"] == "bfloat16" and switch.state == "low" and rec["agreed"]


def test_dtype_guard_compares_the_runs_setting_with_the_reference_first() -> None:
    """fp32 batch 1 is the reference; bf16 at the run's batch size agreeing with it settles both questions in two
    passes. A difference is taken apart: bf16 at batch 1 tells a dtype problem from a batch problem."""
    switch = _Switch()
    calls: list[tuple[str, int]] = []

    def predict(flip_low: bool, flip_batch: bool):
        def run(sub, bs):
            calls.append((switch.state, bs))
            return [("b" if i == 2 and ((flip_low and switch.state == "low") or (flip_batch and bs > 1)) else "a")
                    for i in range(len(sub))]
        return run

    rec = run_canary(predict(False, False), ["x"] * 10, 4, precision=switch)
    assert calls == [("high", 1), ("low", 4)] and rec["agreed"] and rec["dtype_used"] == "bfloat16"
    assert rec["dtype_check"]["mismatches"] == 0 and rec["batch_checks"] == [
        {"batch_size": 4, "mismatches": 0, "examples": []}]
    calls.clear()
    rec = run_canary(predict(False, True), ["x"] * 10, 4, precision=switch, say=lambda m: None)  # batch's fault
    assert calls == [("high", 1), ("low", 4), ("low", 1), ("low", 2)]  # batch 4's labels are not recomputed
    assert rec["dtype_used"] == "bfloat16" and rec["batch_size_used"] == 1
    calls.clear()
    rec = run_canary(predict(True, False), ["x"] * 10, 4, precision=switch, say=lambda m: None)  # dtype's fault
    assert calls == [("high", 1), ("low", 4), ("low", 1), ("high", 4)] and switch.state == "high"
    assert rec["dtype_used"] == "float32" and rec["batch_size_used"] == 4 and not rec["agreed"]


def test_cast_switch_restores_exact_fp32(tiny_causal_lm: Path) -> None:
    model, _, _ = load_causal_lm(str(tiny_causal_lm), dtype="float32")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    switch = CastSwitch(model)
    switch.low()
    assert model.dtype == torch.bfloat16
    switch.high()
    assert model.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())  # buffers too
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # not an upcast of bf16
    switch.low()  # a second round trip works from the same kept fp32 tensors
    switch.high()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    switch.release()
    assert switch.saved is None and not switch.buffers
    auto = AutocastSwitch()
    with auto.context():
        assert torch.is_autocast_enabled("cpu")
    auto.high()
    with auto.context():
        assert not torch.is_autocast_enabled("cpu")


def test_pick_dtype_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert hardware.pick_dtype(device="cpu")[1] == torch.bfloat16
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "amx_tile", "amx_bf16"}))
    assert hardware.pick_dtype(device="cpu")[1] == torch.bfloat16
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))  # emulated bf16: slower
    device, dtype, why = hardware.pick_dtype(device="cpu")
    assert dtype == torch.float32 and "fp32" in why
    assert hardware.pick_dtype("bfloat16", device="cpu")[1] == torch.bfloat16  # --dtype wins
    with pytest.raises(ValueError, match="--dtype"):
        hardware.pick_dtype("bf16", device="cpu")
    prec = hardware.sft_precision("bfloat16")
    assert prec["weights"] == torch.float32 and prec["autocast"] and prec["dtype"] == "bfloat16-autocast"


class _FakeCuda:
    """Mirrors torch 2.13 `torch/cuda/__init__.py`: is_bf16_supported(including_emulation=True) is True on a T4
    (sm_75) because bf16 is emulated; with including_emulation=False it asks for compute capability >= 8."""

    def __init__(self, major: int) -> None:
        self.major = major

    def is_available(self) -> bool:
        return True

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        return True if including_emulation else self.major >= 8

    def get_device_capability(self) -> tuple[int, int]:
        return (self.major, 5)


def test_cuda_bf16_only_when_native(monkeypatch: pytest.MonkeyPatch) -> None:
    for major, want in ((7, torch.float16), (8, torch.bfloat16)):
        monkeypatch.setattr(torch, "cuda", _FakeCuda(major))
        assert hardware.pick_dtype(device="cuda")[1] == want


def test_threads_follow_affinity_and_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(hardware, "_cgroup_quota", lambda: None)
    assert hardware.available_cpus() == 4
    monkeypatch.setattr(hardware, "_cgroup_quota", lambda: 1.5)  # cpu.max "150000 100000"
    assert hardware.available_cpus() == 2
    # where /proc/stat cannot be read, the load average decides
    monkeypatch.setattr(hardware, "_cpu_times", lambda cpus: None)
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert hardware.idle_cpus() == 2
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (14.0, 9.0, 5.0))  # other jobs keep both cores busy
    assert hardware.idle_cpus() == 1


def _stat_samples(monkeypatch: pytest.MonkeyPatch, busy: int, total: int) -> None:
    """Two /proc/stat readings `total` jiffies apart, `busy` of them not idle (over the sampled cores)."""
    samples = iter([(1000, 8000), (1000 + busy, 8000 + total)])
    monkeypatch.setattr(hardware, "_cpu_times", lambda cpus: next(samples))
    monkeypatch.setattr("time.sleep", lambda s: None)


def test_idle_cores_are_sampled_now_not_from_the_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep runs one process per run back to back: the 1-minute load average still counts the run that just
    ended (~1.5 on 2 cores), which gave every later run 1 thread on an idle machine. What counts is /proc/stat now."""
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(hardware, "_cgroup_quota", lambda: None)
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (1.6, 1.2, 0.9))  # the previous run, just ended
    _stat_samples(monkeypatch, busy=2, total=50)  # 2 of 50 jiffies busy over 2 cores: idle now
    assert hardware.idle_cpus() == 2
    _stat_samples(monkeypatch, busy=48, total=50)  # another job keeps both cores busy now
    assert hardware.idle_cpus() == 1
    _stat_samples(monkeypatch, busy=25, total=50)  # one core busy
    assert hardware.idle_cpus() == 1


def test_cpu_times_reads_proc_stat_for_the_given_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = ("cpu  10 0 10 100 0 0 0 0 0 0\n"
            "cpu0 5 0 5 50 2 0 0 0 0 0\n"
            "cpu1 7 1 2 40 0 1 1 0 0 0\n"
            "intr 1 2 3\n")
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: stat if str(self) == "/proc/stat" else real(self, *a, **k))
    assert hardware._cpu_times({0}) == (10, 62)  # busy excludes idle and iowait
    assert hardware._cpu_times({0, 1}) == (10 + 12, 62 + 52)
    saved = torch.get_num_threads()
    try:
        assert hardware.configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert hardware.configure_threads() == 1  # a lower count set earlier is kept
    finally:
        torch.set_num_threads(saved)


def test_hf_backend_records_dtype_prefix_and_canary(tiny_causal_lm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 picked automatically on a CPU is checked against fp32 on the canary; the run says what ran."""
    from prompting_fixtures import SCHEME

    from prompting.backends import BackendOptions, get_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    prompts = [f"{SYSTEM} review {i}: {x}" for i, x in enumerate(INPUTS * 3)]
    backend = get_backend("hf")(str(tiny_causal_lm), BackendOptions(mode="score", batch_size=4, threads=1), SCHEME)
    assert backend.identity()["dtype"] == "bfloat16" and backend.guard_dtype
    out: dict = {}
    backend.answer_all(prompts, out.__setitem__)
    info = backend.run_info
    assert info["canary"]["ran"] and info["canary"]["k"] == 16 and "dtype_check" in info["canary"]
    assert info["dtype"] == info["canary"]["dtype_used"] in ("bfloat16", "float32")
    assert info["prefix_tokens"] >= MIN_PREFIX and len(out) == len(prompts)
    assert {a.meta["dtype"] for a in out.values()} == {info["dtype"]}
    backend.answer_all(prompts[:5], {}.__setitem__)  # a later group: the dtype is settled, batches still checked
    assert "dtype_check" not in backend.run_info["canary"] and backend.run_info["dtype"] == info["dtype"]
    off = get_backend("hf")(str(tiny_causal_lm), BackendOptions(mode="score", batch_check=False, threads=1), SCHEME)
    off.answer_all(prompts[:3], {}.__setitem__)
    assert not off.run_info["canary"]["ran"] and off.run_info["dtype"] == "bfloat16"  # --no-batch-check


@pytest.mark.slow
def test_real_instruct_model_prefix_reuse_is_exact() -> None:
    """qwen2.5-coder-0.5b (offline package; its generation config has a repetition penalty): reuse changes nothing.

    In fp32, the exact path (docs/speed.md). The default on a CPU with native bf16 is bf16, where the last review's
    first token is an exact tie ("Positive" and "negative" both 20.125 at bf16's 0.125 steps): there, reuse or a
    second torch thread alone picks the other word, which is rounding, not the layout this test checks."""
    try:
        model, tok, _ = load_causal_lm("qwen2.5-coder-0.5b", dtype="float32")
    except (ModuleNotFoundError, OSError) as exc:
        pytest.skip(f"offline qwen2.5-coder-0.5b not installed: {exc}")
    reviews = ["a gorgeous, witty film", "dull and far too long", "the cast tries hard", "i laughed, i cried",
               "an utter mess", "not bad at all"]
    prompts = [build_prompt(tok, f"Is this review positive or negative? Answer in one word.\n\n{r}") for r in reviews]
    stats: dict = {}
    plain = generate(model, tok, prompts, max_new_tokens=4, batch_size=4, reuse_prefix=False)
    assert generate(model, tok, prompts, max_new_tokens=4, batch_size=4, stats=stats) == plain
    assert stats["prefix_tokens"] >= MIN_PREFIX
    words = ["positive", "negative"]
    a = score_labels(model, tok, prompts, words, reuse_prefix=False)
    b = score_labels(model, tok, prompts, words)
    assert [r.index(max(r)) for r in a] == [r.index(max(r)) for r in b]


def test_margin_rules() -> None:
    """The near-tie rule of docs/speed.md: the top-two gap, and the largest change to any score difference."""
    from eval.lm.infer import margin, near_ties, pair_error, rescore_near_ties

    rows = [[-0.1, -3.0, -2.0], [-1.0, -1.05], [-0.7, -0.69]]
    assert margin(rows[0]) == pytest.approx(1.9) and margin(rows[1]) == pytest.approx(0.05)
    assert near_ties(rows, 0.1) == [1, 2] and near_ties(rows, 0.0) == []
    # bf16 moved label 0 by +0.1 and label 1 by -0.2: the difference of the two changed by 0.3
    assert pair_error([-0.9, -1.2], [-1.0, -1.0]) == pytest.approx(0.3)
    asked: list = []
    done = rescore_near_ties(rows, 0.1, lambda idx: asked.append(idx) or [[0.0, -9.0] for _ in idx])
    assert done == [1, 2] and asked == [[1, 2]] and rows[1] == rows[2] == [0.0, -9.0] and rows[0][0] == -0.1
    assert rescore_near_ties(rows, 0.0, lambda idx: pytest.fail("nothing to re-score")) == []


def test_cast_switch_round_trips_reuse_both_tensor_sets(tiny_causal_lm: Path) -> None:
    """After the first cast, switching (once per batch for the re-scoring) swaps references and never casts again."""
    model, _, _ = load_causal_lm(str(tiny_causal_lm), dtype="float32")
    switch = CastSwitch(model)
    switch.low()
    first = next(model.parameters()).data_ptr()
    assert switch.is_low
    switch.high()
    assert not switch.is_low and next(model.parameters()).dtype == torch.float32
    switch.low()
    assert next(model.parameters()).data_ptr() == first  # the kept bf16 storage, not a new cast
    switch.release()
    assert switch.low_saved is None and switch.saved is None


def test_hf_bf16_scoring_rescores_near_ties_in_fp32(tiny_causal_lm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 + fp32 re-scoring of the near ties: items re-scored carry fp32's scores, the record counts them, and
    the setting is part of the backend's identity (run id, cache key) only when it can change a label."""
    from prompting_fixtures import SCHEME

    from prompting.backends import BackendOptions, get_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    prompts = [f"{SYSTEM} review {i}: {x}" for i, x in enumerate(INPUTS * 3)]

    def run(**kw) -> tuple:
        backend = get_backend("hf")(str(tiny_causal_lm), BackendOptions(mode="score", batch_size=4, threads=1, **kw),
                                    SCHEME)
        out: dict = {}
        backend.answer_all(prompts, out.__setitem__)
        return backend, [out[i] for i in range(len(prompts))]

    fp32, ref = run(dtype="float32")
    assert "rescore" not in fp32.identity() and not fp32.run_info["rescore"]["active"]
    everything, got = run(rescore_margin=1e9, batch_check=False)  # every item is a "near tie": all of fp32
    info = everything.run_info["rescore"]
    assert info["active"] and info["items"] == info["rescored"] == len(prompts)
    assert everything.identity()["rescore_margin"] == 1e9 and everything.identity()["dtype"] == "bfloat16"
    assert [a.text for a in got] == [a.text for a in ref] and all(a.meta["rescored_fp32"] for a in got)
    for a, b in zip(got, ref, strict=True):
        assert a.meta["scores"] == pytest.approx(b.meta["scores"], abs=1e-4)
    default, got = run()  # the calibrated margin, with the canary (its dtype check sees the re-scored labels)
    info = default.run_info["rescore"]
    assert info["active"] and info["items"] == len(prompts) and 0 <= info["rescored"] <= len(prompts)
    calibration = info["margin_from"]["calibrated on the canary's items"]  # the canary's fp32 vs bf16 scores
    assert calibration["items"] == 16 and info["margin"] == pytest.approx(
        max(RESCORE_FLOOR, RESCORE_FACTOR * calibration["max_pair_error"]), abs=1e-3)
    assert default.identity()["rescore"] == RESCORE_RULE and "rescore_margin" not in default.identity()
    assert sum(bool(a.meta.get("rescored_fp32")) for a in got) == info["rescored"]
    assert "dtype_check" in default.run_info["canary"]
    plain, _ = run(rescore_margin=0)
    assert "rescore" not in plain.identity() and "0" in plain.run_info["rescore"]["reason"]
    generate = get_backend("hf")(str(tiny_causal_lm), BackendOptions(mode="generate", threads=1), SCHEME)
    assert not generate.rescore_on and "rescore" not in generate.identity()


def test_fp32_head_scores_bf16_labels_without_rounding_the_logits(tiny) -> None:
    """fp32_head on a bf16 model: the same scores up to bf16's rounding of the logits (on real models it cuts the
    bf16/fp32 margin error ~3x: BENCHMARKS.md; this 32-wide random model's small logits are hardly rounded); a
    no-op in fp32; log-probabilities for multi-token candidates too (their first token from the fp32 head)."""
    import copy

    model, tok, prompts = tiny
    words = ["positive", "negative", "neutral"]
    ref = score_labels(model, tok, prompts, words, batch_size=4)
    assert score_labels(model, tok, prompts, words, batch_size=4, fp32_head=True) == ref  # fp32: unchanged
    half = copy.deepcopy(model).to(torch.bfloat16)
    plain = score_labels(half, tok, prompts, words, batch_size=4)
    head = score_labels(half, tok, prompts, words, batch_size=4, fp32_head=True)
    assert head != plain and all(x == pytest.approx(y, abs=0.05) for a, b in zip(head, plain) for x, y in zip(a, b))
    multi = ["very good", "very bad"]
    full_ref = score_labels(model, tok, prompts, multi, batch_size=4)
    full_head = score_labels(half, tok, prompts, multi, batch_size=4, fp32_head=True)
    assert all(s < 0 for row in full_head for s in row)
    assert [max(range(2), key=r.__getitem__) for r in full_head] == [max(range(2), key=r.__getitem__)
                                                                      for r in full_ref]


def test_the_near_tie_rule_is_in_the_run_id_only_where_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Results can change with the rule, so its spec differs; fp32 and generation specs keep their ids, and a spec
    with --rescore-margin round-trips through the sweep/spec path."""
    from eval.tracks import DataRef, track

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    t = track("prompting")

    def spec(method: str, **options):
        return t.make_spec(t.config_from_options("hf/gemma3-270m", method, options), DataRef("rotten"), 0, 0, 8)

    auto, fp32 = spec("score"), spec("score", dtype="float32")
    assert auto.options["rescore"] == RESCORE_RULE and "rescore" not in fp32.options
    assert "rescore" not in spec("zeroshot").options and "rescore" not in spec("score", rescore_margin=0).options
    fixed = spec("score", rescore_margin=0.3)
    assert len({auto.run_id, fp32.run_id, fixed.run_id}) == 3 and fixed.options["rescore_margin"] == 0.3
    again = t.make_spec(t.config_from_spec(fixed), DataRef("rotten"), 0, 0, 8)
    assert again.run_id == fixed.run_id
    with pytest.raises(ValueError, match="rescore-margin"):
        t.config_from_options("hf/gemma3-270m", "score", {"rescore_margin": -1})
