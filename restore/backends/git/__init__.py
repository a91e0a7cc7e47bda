"""The git backend: snapshots as commits on a branch (docs/git.md).

`repository.GitRepository` implements the Repository protocol; `maintenance` holds verify and
prune; both are built on `remote.Remote` (private git dirs, locks, fetches, the listing) and the
plumbing below it: `cmd` (running git), `auth`, `settings`, `history` (commit trailers), `tree`
and `meta` (walking the folder, checking trees, `.caretaker-meta`), `stage` (index and push).
"""
