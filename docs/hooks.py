"""MkDocs hook: the site is built from the repository's own Markdown, links as the repository has them.

Pages link with relative paths that work on the repository's web view and in a clone: `docs/` pages to each
other, and out of `docs/` to the README, `benchmarks/results/…` or `tools/…`. The site needs those targets too,
so the README becomes the home page (``index.md``) and every file outside `docs/` that a page links to (found
transitively: a linked README's own links count) is published under ``repo/`` at its repository path, each
link rewritten to where its target lies on the site. A link out of `docs/` to a file that does not exist is a
warning, so an error under ``mkdocs build --strict``; MkDocs checks the links inside `docs/` itself.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files, InclusionLevel

# [text](target) and ![alt](target): the target up to whitespace or the closing parenthesis
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
# a fenced code block, whole: links inside one are code, not links
FENCED = re.compile(r"(^(?:```|~~~).*?^(?:```|~~~)[^\n]*$)", re.MULTILINE | re.DOTALL)
HOME = "README.md"
OUTSIDE = "repo/"

# a warning here is an error under --strict
log = logging.getLogger("mkdocs.hooks.attnprompt")
# repository path of each page the hook added (site src_uri → repository path)
_added: dict[str, str] = {}


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _docs_prefix(config) -> str:
    return Path(config.docs_dir).resolve().relative_to(_root(config)).as_posix() + "/"


def _repo_path(src_uri: str, config) -> str:
    """Where a site file lies in the repository."""
    return _added.get(src_uri, _docs_prefix(config) + src_uri)


def _site_uri(repo_path: str, config) -> str:
    """Where a repository file lies on the site."""
    prefix = _docs_prefix(config)
    if repo_path.startswith(prefix):
        return repo_path[len(prefix):]
    if repo_path == HOME:
        return "index.md"
    return OUTSIDE + repo_path


def _targets(markdown: str, repo_path: str) -> list[tuple[str, str]]:
    """(link as written, the repository path it points at) for each relative link outside code blocks."""
    found = []
    for part in FENCED.split(markdown)[::2]:
        for match in LINK.finditer(part):
            target = match.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
                continue
            path = target.split("#", 1)[0]
            if path:
                found.append((target, posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), path))))
    return found


def _outside_code(markdown: str, rewrite) -> str:
    """``markdown`` with ``rewrite`` applied to each link outside fenced code blocks."""
    pieces = FENCED.split(markdown)
    return "".join(p if k % 2 else LINK.sub(rewrite, p) for k, p in enumerate(pieces))


def on_files(files: Files, config) -> Files:
    root = _root(config)
    _added.clear()
    pending: list[str] = []
    if files.get_file_from_path("index.md") is None:
        _added["index.md"] = HOME
        files.append(File.generated(config, "index.md", abs_src_path=str(root / HOME)))
        pending.append("index.md")
    pending += [f.src_uri for f in files.documentation_pages() if f.src_uri not in _added]
    seen = set(pending)
    while pending:
        src_uri = pending.pop()
        source = root / _repo_path(src_uri, config)
        for _, target in _targets(source.read_text(encoding="utf-8"), _repo_path(src_uri, config)):
            uri = _site_uri(target, config)
            if not uri.startswith(OUTSIDE) or uri in seen or not (root / target).is_file():
                continue
            seen.add(uri)
            _added[uri] = target
            files.append(File.generated(config, uri, abs_src_path=str(root / target),
                                        inclusion=InclusionLevel.NOT_IN_NAV))
            if uri.endswith(".md"):
                pending.append(uri)
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    here = page.file.src_uri
    repo_path = _repo_path(here, config)

    def rewrite(match: re.Match) -> str:
        target = match.group(2)
        links = dict(_targets(match.group(0), repo_path))
        if target not in links:
            return match.group(0)
        uri = _site_uri(links[target], config)
        if uri.startswith(OUTSIDE) and uri not in _added:
            log.warning(f"{repo_path} links to {target}, which is not a file of the repository")
            return match.group(0)
        anchor = "#" + target.split("#", 1)[1] if "#" in target else ""
        relative = posixpath.relpath(uri, posixpath.dirname(here) or ".")
        return f"{match.group(1)}{relative}{anchor}{match.group(3)}"

    return _outside_code(markdown, rewrite)
