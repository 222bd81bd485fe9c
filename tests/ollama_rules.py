"""Stand-ins for two rules of the Ollama server that decide what an exported model sees, ported from its Go sources
(github.com/ollama/ollama at 5dbb81b7: parser/parser.go; server/images.go and server/routes.go as of v0.33), and
applied to real GGUF metadata read with gguf-py.

- `parse_modelfile`: parser/parser.go `ParseFile` + `parseRuneForState` + `unquote` — a value ends at a space or
  newline once `unquote` accepts the text so far; `unquote` strips one pair of `\"\"\"` or `"` and undoes no escapes;
  runes that are not printable (strconv.IsPrint) are dropped except the separators it writes back itself.
- `template_source`: which template renders a prompt. server/routes.go `shouldUseGoTemplate` (without the
  OLLAMA_GO_TEMPLATE override): the Modelfile's Go TEMPLATE unless `PreferChatTemplate`, which server/images.go sets
  from `shouldPreferChatTemplate(chat caps, go caps)`. Capabilities: `ggufCapabilities` (completion for a GGUF
  without pooling_type; for the chat source, `chatTemplateCapabilities`: tools when the Jinja text contains "tools"
  or "tool_call", thinking when it carries a think-tag pair, thinking/chat_template.go `chatTemplateThinkTags`),
  `goTemplateCapabilities` (tools / suffix variables, thinking tags over `.Thinking`).
"""

from __future__ import annotations

from pathlib import Path

THINK_TAGS = [("<think>", "</think>"), ("<|channel>", "<channel|>"), ("<|START_THINKING|>", "<|END_THINKING|>"),
              ("<seed:think>", "</seed:think>")]
COMMANDS = {"from", "license", "template", "system", "adapter", "renderer", "parser", "parameter", "message",
            "requires"}


def _unquote(s: str) -> tuple[str, bool]:
    if s[:3] == '"""':
        return (s[3:-3], True) if len(s) >= 6 and s[-3:] == '"""' else ("", False)
    if s[:1] == '"':
        return (s[1:-1], True) if len(s) >= 2 and s[-1] == '"' else ("", False)
    return s, True


def _printable(r: str) -> bool:
    return r.isprintable()  # Go strconv.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """[(command, args)] as ollama's parser reads a Modelfile; PARAMETER lines come back as (name, value)."""
    nil, name, value, parameter, message, comment = range(6)
    cmds: list[tuple[str, str]] = []
    curr, buf, cmd_name, role = nil, "", "", ""

    def step(r: str, cs: int) -> tuple[int, str]:
        space, newline = r in " \t", r in "\r\n"
        if cs == nil:
            return (comment, "") if r == "#" else ((nil, "") if space or newline else (name, r))
        if cs == name:
            if r.isascii() and r.isalpha():
                return name, r
            if space:
                return value, ""
            raise ValueError("invalid command")
        if cs == value:
            return (nil, r) if newline or space else (value, r)
        if cs == parameter:
            if (r.isascii() and (r.isalnum())) or r == "_":
                return parameter, r
            if space:
                return value, ""
            raise ValueError("unexpected EOF")
        if cs == message:
            if r.isascii() and r.isalpha():
                return message, r
            if space:
                return value, ""
            raise ValueError("unexpected EOF")
        return (nil, "") if newline else (comment, "")

    for r in text:
        nxt, r = step(r, curr)
        if nxt != curr:
            if curr == name:
                word = buf.lower()
                if word not in COMMANDS:
                    raise ValueError(f"invalid command {buf!r}")
                if word == "from":
                    cmd_name = "model"
                elif word == "parameter":
                    nxt = parameter
                elif word == "message":
                    nxt, cmd_name = message, word
                else:
                    cmd_name = word
            elif curr == parameter:
                cmd_name = buf
            elif curr == message:
                role = buf
            elif curr == value:
                s, ok = _unquote(buf.strip())
                if not ok or r in " \t":
                    buf += r
                    continue
                if role:
                    s, role = f"{role}: {s}", ""
                cmds.append((cmd_name, s))
            buf, curr = "", nxt
        if r and _printable(r):
            buf += r
    if curr == value:
        s, ok = _unquote(buf.strip())
        if not ok:
            raise ValueError("unexpected EOF")
        cmds.append((cmd_name, f"{role}: {s}" if role else s))
    elif curr not in (nil, comment):
        raise ValueError("unexpected EOF")
    return cmds


def _chat_caps(chat_template: str) -> set[str]:
    caps = {"completion"}
    if "tools" in chat_template or "tool_call" in chat_template:
        caps.add("tools")
    if any(o in chat_template and c in chat_template for o, c in THINK_TAGS):
        caps.add("thinking")
    return caps


def _go_caps(go_template: str) -> set[str]:
    caps = {"completion"}
    if ".Tools" in go_template:
        caps.add("tools")
    if ".Suffix" in go_template:
        caps.add("insert")
    if ".Thinking" in go_template and any(o in go_template and c in go_template for o, c in THINK_TAGS):
        caps.add("thinking")
    return caps


def _chat_round_trip(t: str) -> bool:
    if "tools" not in t and "tool_call" not in t:
        return False
    calls = "tool_calls" in t or "assistant_tool_call" in t
    return calls and any(k in t for k in ("tool_response", "tool_results", "role'] == 'tool'", "role'] == \"tool\"",
                                          "role\"] == 'tool'", "role\"] == \"tool\"", "message.role == 'tool'",
                                          'message.role == "tool"', "ipython"))


def _go_round_trip(t: str) -> bool:
    return (".Tools" in t and ".ToolCalls" in t
            and any(k in t for k in ('eq .Role "tool"', "tool_response", "TOOL_RESULTS")))


def should_prefer_chat_template(chat_template: str, go_template: str) -> bool:
    chat, go = _chat_caps(chat_template), _go_caps(go_template)
    if len(chat) > len(go):
        return not _go_round_trip(go_template) or _chat_round_trip(chat_template)
    if chat != go or "tools" not in chat:
        return False
    return _chat_round_trip(chat_template) and not _go_round_trip(go_template)


def gguf_chat_template(path: Path) -> str:
    import gguf

    field = gguf.GGUFReader(path, "r").get_field(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    return str(field.contents()) if field is not None else ""


def template_source(modelfile: Path) -> str:
    """"go_template" (the Modelfile's TEMPLATE renders the prompt), "gguf_chat_template" or "none", for the model
    `ollama create -f <modelfile>` builds from the GGUF its FROM line names."""
    cmds = parse_modelfile(modelfile.read_text(encoding="utf-8"))
    gguf_path = modelfile.parent / next(a for c, a in cmds if c == "model")
    go_template = next((a for c, a in cmds if c == "template"), "")
    chat = gguf_chat_template(gguf_path)
    if go_template and not (chat and should_prefer_chat_template(chat, go_template)):
        return "go_template"
    return "gguf_chat_template" if chat else "none"
