"""Moved to eval/prompts.py (prompt files are shared by the prompting and SFT tracks); kept for old imports."""

from eval.prompts import (  # noqa: F401
    PROMPTS_DIR,
    TEMPLATES,
    Prompt,
    TemplateFile,
    fill,
    label_words,
    load_prompt,
    prompt_version,
    read_template,
    sft_instruction,
)
