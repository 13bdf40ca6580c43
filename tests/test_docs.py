"""The README and the pages in docs/ as a newcomer uses them: every command in their ``bash`` blocks is run
here, offline on the shapes models, or marked with what it needs that a test cannot have (``# needs: GPU``,
``hub``, ``server`` or ``cluster``); an unmarked command this file cannot run fails. The README's install and
test commands are what CI runs, its first run runs exactly as written (slow), no two documented runs share a
folder, the README stays a front door (≤ 150 lines), and the docs site builds with warnings as errors.

How each command runs (docs/development.md says the same):
- ``attnprompt eval`` with ``--limit 2`` added, since a full run is too long for the suite (the README's first
  run also runs exactly as written, marked slow); ``ask``, ``annotate`` as written; each from a temporary
  folder holding the repository's ``examples/``, in this process;
- ``attnprompt demo`` and ``serve`` started on a free port (their ``--port`` replaced) until they answer;
- the benchmark scripts with small arguments added (each named in ``SMALL``), the Ray and VLMEvalKit commands:
  slow;
- ``pip install`` lines are checked, not run: the extras exist, the pinned packages are the ones install.sh
  installs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from attnprompt.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"bash", "sh", "shell", "console"}
VOCABULARY = {"GPU", "hub", "server", "cluster"}
NEEDS = re.compile(r"^needs:\s*([A-Za-z]+(?:\s*,\s*[A-Za-z]+)*)")
# where a documented run writes: every one its own folder
OUTPUTS = re.compile(r"(?:--out|--work-dir|--output_path|--out-dir)[ =](\S+)|\bstore=([^,\s]+)|\bout=\"([^\"]+)\"")

# the arguments each benchmark gets here: its --smoke size, seconds (the last of a repeated flag wins);
# {tmp} is the test's folder, so nothing is written into benchmarks/results
SMALL = {
    **{p.name: ["--smoke"] for p in (ROOT / "benchmarks").glob("bench_*.py")},
    "bench_crops.py": ["--smoke", "--out", "{tmp}"],
}


@dataclass(frozen=True)
class Command:
    """One command of a page's ``bash`` block: continuation lines joined, its trailing comment apart."""

    page: str
    line: int
    text: str
    comment: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def needs(self) -> set[str]:
        found = NEEDS.match(self.comment)
        return {w.strip() for w in found.group(1).split(",")} if found else set()

    @property
    def segments(self) -> list[list[str]]:
        return [shlex.split(part) for part in self.text.split(" && ")]


def split_comment(line: str) -> tuple[str, str]:
    """``line`` without its trailing shell comment (a ``#`` after a space, outside quotes), and the comment."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip(), line[k + 1:].strip()
    return line.rstrip(), ""


def blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of each fenced block of a Markdown file."""
    found, lines, k = [], path.read_text(encoding="utf-8").splitlines(), 0
    while k < len(lines):
        fence = re.match(r"^(```|~~~)\s*(\S*)", lines[k])
        if not fence:
            k += 1
            continue
        end = next(j for j in range(k + 1, len(lines)) if lines[j].startswith(fence.group(1)))
        found.append((fence.group(2), k + 2, lines[k + 1:end]))
        k = end + 1
    return found


def commands(path: Path) -> list[Command]:
    """Every command in the page's shell blocks."""
    found = []
    for language, first, lines in blocks(path):
        if language not in SHELLS:
            continue
        text, start = "", None
        for k, raw in enumerate(lines):
            code, comment = split_comment(raw)
            if not code:
                continue
            start = first + k if start is None else start
            if code.endswith("\\"):
                text += code[:-1].strip() + " "
                continue
            found.append(Command(str(path.relative_to(ROOT)), start, (text + code.strip()).strip(), comment))
            text, start = "", None
    return found


ALL = [c for page in PAGES for c in commands(page)]
needs_mkdocs = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                                  reason="the docs site needs MkDocs: pip install -e '.[docs]' (part of [dev])")
CI_LINES = (ROOT / ".ci" / "run").read_text().splitlines()


def kind(words: list[str]) -> str | None:
    """How one ``&&``-separated part of a command is covered here, or None when it is not."""
    env = [w for w in words if re.match(r"^[A-Za-z_]+=", w)]
    words = words[len(env):]
    if words[:2] == ["pip", "install"]:
        return "pip"
    if words == ["./install.sh"]:
        return "ci"
    if words[:2] == ["mkdocs", "build"]:
        return "site"
    if words[:1] == ["attnprompt"] and len(words) > 1:
        if words[1] == "eval":
            return "slow" if "--executor" in words else "eval"
        if words[1] in ("ask", "annotate", "report"):
            return "cli"
        if words[1] in ("demo", "serve"):
            return "server"
        if words[1] == "vlmeval":
            return "slow"
    if words[:1] == ["python"] and len(words) > 1 and words[1].startswith("benchmarks/"):
        return "slow" if Path(words[1]).name in SMALL else None
    return None


def kinds(command: Command) -> list[str | None]:
    if " ".join(command.text.split()) in {" ".join(line.split()) for line in CI_LINES}:
        return ["ci"]
    return [kind(words) for words in command.segments]


def of_kind(*wanted: str) -> list:
    """The unmarked commands with a part of these kinds, each text once (the README repeats a page's few)."""
    found = {}
    for c in ALL:
        if not c.needs and set(kinds(c)) & set(wanted):
            found.setdefault(str([w for w in c.segments if kind(w) in wanted]), c)
    return [pytest.param(c, id=c.id) for c in found.values()]


def test_the_readme_is_a_front_door_of_at_most_150_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


def test_every_command_is_run_here_or_marked_with_what_it_needs():
    assert len(ALL) > 20  # the pages were read: a parser that finds nothing would pass everything below
    unknown = [f"{c.id}: {c.text}" for c in ALL if not c.needs and None in kinds(c)]
    assert not unknown, "commands neither run by tests/test_docs.py nor marked '# needs: …':\n" + "\n".join(unknown)


def test_needs_markers_name_only_what_a_test_cannot_have():
    marked = [c for c in ALL if "needs" in c.comment]
    assert marked and all(c.needs for c in marked), [c.id for c in marked if not c.needs]
    wrong = {c.id: sorted(c.needs - VOCABULARY) for c in marked if c.needs - VOCABULARY}
    assert not wrong, f"unknown needs (use {sorted(VOCABULARY)}): {wrong}"


def test_the_readmes_install_and_test_commands_are_what_ci_runs():
    readme = commands(ROOT / "README.md")
    install, test = readme[0], readme[1]
    assert install.text == "./install.sh" and test.text == "ruff check && python -m pytest -q"
    assert CI_LINES.count(install.text) == 1 and CI_LINES.count(test.text) == 1
    assert CI_LINES.index(install.text) < CI_LINES.index(test.text)
    # the third is the first run, the fourth the full job: the same command but for --limit and the folder
    first, full = readme[2].segments[0], readme[3].segments[0]
    assert first[:2] == ["attnprompt", "eval"] and "--limit" in first and "--limit" not in full

    def unlimited(words):
        k = words.index("--limit") if "--limit" in words else None
        words = words if k is None else words[:k] + words[k + 2:]
        return words[:words.index("--out")]

    assert unlimited(first) == unlimited(full)


def test_install_lines_name_extras_that_exist_and_what_install_sh_pins():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    script = (ROOT / "install.sh").read_text()
    pips = [w for c in ALL for w in c.segments if w[:2] == ["pip", "install"]]
    assert pips
    for words in pips:
        for word in words[2:]:
            named = re.fullmatch(r"\.\[([a-z,]+)\]", word)
            if named:
                assert set(named.group(1).split(",")) <= extras, word
            elif "==" in word:
                assert word in script.split(), f"{word} is not what install.sh installs"
            else:
                assert word in ("-e", "--no-deps"), word


def test_no_two_documented_runs_write_to_one_folder():
    texts = [c.text for c in ALL] + ["\n".join(lines) for page in PAGES for lang, _, lines in blocks(page)
                                     if lang == "python"]
    folders = [next(g for g in m.groups() if g) for text in texts for m in OUTPUTS.finditer(text)]
    assert len(folders) > 10
    assert len(folders) == len(set(folders)), sorted({f for f in folders if folders.count(f) > 1})


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder like the repository's root for a command to run in: the examples it names, nothing else."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _outputs(words: list[str]) -> list[str]:
    return [words[k + 1] for k, w in enumerate(words[:-1]) if w in ("--out", "-o", "--visual")]


@pytest.mark.parametrize("command", of_kind("eval", "cli"))
def test_offline_command_runs(command, workdir, capsys):
    for words in command.segments:
        if kind(words) == "eval":
            words = [*words, "--limit", "2"]  # a full run is too long for the suite: its first 2 samples
        assert main(words[1:]) == 0, capsys.readouterr().err[-2000:]
        for out in _outputs(words):
            assert (workdir / out).exists(), out
        if kind(words) == "eval":
            assert (workdir / words[words.index("--out") + 1] / "report.md").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", of_kind("server"))
def test_server_command_answers_on_its_port(command, workdir):
    words = next(w for w in command.segments if kind(w) == "server")
    port = free_port()
    if "--port" in words:
        words = [*words[:words.index("--port")], *words[words.index("--port") + 2:]]
    url = f"http://127.0.0.1:{port}/" + ("v1/models" if words[1] == "serve" else "")
    proc = subprocess.Popen([sys.executable, "-m", "attnprompt", *words[1:], "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()[-2000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    assert reply.status == 200
                    if words[1] == "serve":
                        assert json.loads(reply.read())["data"][0]["id"] == "shapes"
                    return
            except OSError:
                time.sleep(1)
        pytest.fail(f"{command.text} did not answer on {url}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("command", of_kind("slow"))
def test_slow_command_runs(command, workdir):
    words = command.segments[-1]
    env = {**os.environ, **dict(w.split("=", 1) for w in words if re.match(r"^[A-Za-z_]+=", w))}
    words = [w for w in words if not re.match(r"^[A-Za-z_]+=", w)]
    if words[0] == "python":
        extra = [a.format(tmp=workdir) for a in SMALL[Path(words[1]).name]]
        argv = [sys.executable, str(ROOT / words[1]), *words[2:], *extra]
    elif words[1] == "eval":
        argv = [sys.executable, "-m", "attnprompt", *words[1:], "--limit", "2"]
    else:  # VLMEvalKit on a TSV in its layout and the config the page shows in its comment
        # looked up, not imported: the kit imports torchvision at once, which only attnprompt's stand-in supplies
        if importlib.util.find_spec("vlmeval") is None:
            pytest.skip("VLMEvalKit is not installed: ./install.sh installs it")
        import pandas as pd

        from test_vlmeval import count_rows

        lmu = workdir / env["LMUData"]
        lmu.mkdir(parents=True)
        pd.DataFrame(count_rows(4)).to_csv(lmu / "HRB_local.tsv", sep="\t", index=False)
        config = _config_comment(command, words[words.index("--config") + 1])
        (workdir / words[words.index("--config") + 1]).write_text(json.dumps(config))
        env["LMUData"] = str(lmu)
        argv = [sys.executable, "-m", "attnprompt", *words[1:]]
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def _config_comment(command: Command, name: str) -> dict:
    """The JSON a page gives in the comment lines after a command (``# NAME: {…}``)."""
    lines = (ROOT / command.page).read_text(encoding="utf-8").splitlines()[command.line:]
    text = ""
    for line in lines:
        if not line.startswith("#"):
            break
        text += line.lstrip("#").strip().removeprefix(f"{name}:") + " "
    return json.loads(text)


@pytest.mark.slow
def test_the_readmes_first_run_exactly_as_written(tmp_path):
    first = commands(ROOT / "README.md")[2]
    proc = subprocess.run(first.text, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    words = first.segments[0]
    report = json.loads((tmp_path / words[words.index("--out") + 1] / "report.json").read_text())
    tasks = {t["name"]: t for t in report["tasks"]}
    assert set(tasks) == set(words[words.index("--task") + 1].split(","))
    limit = int(words[words.index("--limit") + 1])
    for task in tasks.values():
        # one row per strategy, in the command's order (`api (api-clip)`, `carve (vicrop)` …), each with its interval
        assert [c["label"].split()[0] for c in task["conditions"]] == words[words.index("--strategy") + 1].split(",")
        assert all(c["n"] >= 0.9 * limit for c in task["conditions"])  # the whole limit, a few failures at most
        assert all(c["interval"][0] <= c["value"] <= c["interval"][1] for c in task["conditions"])
        assert all(c["delta"]["low"] <= c["delta"]["value"] <= c["delta"]["high"] for c in task["conditions"][1:])


@needs_mkdocs
def test_the_docs_site_builds_with_warnings_as_errors(tmp_path):
    proc = _mkdocs(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the README is the home page, and what pages link to outside docs/ is published with them
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "repo" / "benchmarks" / "results" / "memory_cpu.txt").is_file()
    home = (tmp_path / "site" / "index.html").read_text()
    assert 'href="evaluation/#exit-codes"' in home and "docs/evaluation.md" not in home


@needs_mkdocs
def test_a_link_to_a_missing_file_outside_docs_fails_the_build(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "notes.txt").write_text("kept beside the docs\n")
    (tmp_path / "README.md").write_text("# Home\n\n[the notes](notes.txt), [the page](docs/page.md)\n")
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n[home](../README.md), [notes](../notes.txt)\n")
    (tmp_path / "mkdocs.yml").write_text(f"site_name: t\nhooks:\n  - {ROOT / 'docs' / 'hooks.py'}\n"
                                         "nav:\n  - index.md\n  - page.md\n")
    assert _mkdocs(tmp_path, tmp_path / "site").returncode == 0
    assert (tmp_path / "site" / "repo" / "notes.txt").read_text() == "kept beside the docs\n"
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n[gone](../benchmarks/gone.md)\n")
    proc = _mkdocs(tmp_path, tmp_path / "site")
    assert proc.returncode != 0 and "gone.md" in proc.stderr


def _mkdocs(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2 is not about our pages
    # not -q: a quiet build drops the warnings that --strict counts
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, env=env, timeout=600)
