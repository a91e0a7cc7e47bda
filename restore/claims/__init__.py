"""The writer claim: one writer per repository, held by a sidecar for its whole life.

`record` is the document and the slot interface a repository implements (an object for
the snapshot engine, a ref for git), `watch` tells live claims from expired ones without
comparing clocks, `holder` takes, renews and releases a claim. docs/claims.md says what it
guarantees.
"""
