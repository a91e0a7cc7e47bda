"""The snapshot engine: content-addressed, compressed, deduplicated snapshots on any object store.

`engine.Engine` implements the Repository protocol over a `store.ObjectStore` (the local
directory and S3 backends implement that interface). The on-storage format — config, packs,
index objects, snapshot records, the manifest stream, the lease, key names, versioning and
what a reader must reject — is specified in docs/format.md; docs/engine.md says what the
engine guarantees and how.
"""
