"""A job's resolved inputs: the dataset rows, user template, system prompts and judge templates,
each with the file it came from and that file's sha256 (what a run pins)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from afbatch.datasets import Dataset, Source, load_dataset, read_source
from afbatch.judge_templates import Template, check_rule, stage_template
from afbatch.protocol import check_user_template, render_user
from afbatch.published import notebook_user_template
from afbatch.spec import Job, JudgeRules, LoadedJob, VariantSpec
from afbatch.types import Conversation


@dataclass(frozen=True)
class Grid:
    """Everything the job's files resolve to: dataset rows, template, system prompts, judge
    templates, their pins."""

    loaded: LoadedJob
    dataset: Dataset
    template: str
    systems: dict[str, str]
    inputs: dict[str, dict[str, str]]
    judge_templates: dict[str, Template]

    @property
    def job(self) -> Job:
        return self.loaded.job

    def variant(self, name: str) -> VariantSpec:
        for v in self.job.variants:  # a handful: a scan is as quick as a dict
            if v.name == name:
                return v
        raise KeyError(name)

    def user_message(self, conv: Conversation) -> str:
        """The rendered user turn (not kept per conversation: 100k of them would hold ~100 MB)."""
        return render_user(self.template, conv.tier, conv.user_input, self.job.prompts.tier_format)


Reader = Callable[..., Source]


def load_grid(loaded: LoadedJob, *, offline: bool = False, read: Reader = read_source) -> Grid:
    """Resolve every input of a job; `read` lets a resumed run read its pinned copies from the
    store."""
    job = loaded.job
    dataset = load_dataset(loaded, offline=offline, read=read)
    tpl = read_user_template(loaded, offline=offline, read=read)
    inputs = {
        "dataset": {"ref": dataset.ref, "sha256": dataset.sha256},
        "user_template": {"ref": tpl.ref, "sha256": tpl.sha256},
    }
    systems: dict[str, str] = {}
    for v in job.variants:
        src = read(
            loaded.resolve(v.system_prompt), offline=offline, expected_sha256=v.system_prompt_sha256
        )
        systems[v.name] = src.text
        inputs[f"variants.{v.name}.system_prompt"] = {"ref": src.ref, "sha256": src.sha256}
    judges: dict[str, Template] = {}
    if job.judge:
        for stage, ref, rules, key in judge_stages(job):
            judges[stage], src = stage_template(
                loaded.resolve(ref), stage, rules, f"judge.{key}", offline=offline, read=read
            )
            inputs[f"judge.{stage}_template"] = {"ref": src.ref, "sha256": src.sha256}
        check_rule(judges["compliance"], job.judge.compliance_rule)
    return Grid(
        loaded=loaded,
        dataset=dataset,
        template=tpl.text,
        systems=systems,
        inputs=inputs,
        judge_templates=judges,
    )


def judge_stages(job: Job) -> list[tuple[str, str, JudgeRules | None, str]]:
    """(stage, template ref, the job's parse rules or None, the rules' key) of each judge stage."""
    j = job.judge
    if j is None:
        return []
    out = [("compliance", j.compliance_template, j.compliance_rules, "compliance_rules")]
    if j.af_template:
        out.append(("alignment_faking", j.af_template, j.af_rules, "af_rules"))
    if j.partial_template:
        out.append(("partial_compliance", j.partial_template, j.partial_rules, "partial_rules"))
    return out


@dataclass(frozen=True)
class UserTemplate:
    """The user template as afbatch fills it, with the file it came from and that file's sha256."""

    ref: str
    sha256: str
    text: str


def read_user_template(
    loaded: LoadedJob, *, offline: bool = False, read: Reader = read_source
) -> UserTemplate:
    """The job's user template (a text file, or the one a published notebook defines), refused
    unless it holds every placeholder the grid needs."""
    prompts = loaded.job.prompts
    src = read(
        loaded.resolve(prompts.user_template),
        offline=offline,
        expected_sha256=prompts.user_template_sha256,
    )
    text = notebook_user_template(src.data, src.ref) if is_notebook(src.ref) else src.text
    check_user_template(text, src.ref)
    return UserTemplate(ref=src.ref, sha256=src.sha256, text=text)


def is_notebook(ref: str) -> bool:
    return ref.split("?")[0].endswith(".ipynb")
