"""The snapshot engine: content-addressed, compressed, deduplicated snapshots on any ObjectStore.

Repository layout (keys under the repository URL):

    config                  format version and repository id, written once
    data/<2 hex>/<pack id>  packs: concatenated zstd frames, one per blob
    index/<id>              which blobs each pack holds, at which offset (written after the pack)
    snapshots/<id>          snapshot records (JSON), written LAST: a snapshot is visible only
                            when everything it references is durable
    lease                   the writer lease (owner, expiry), taken with a conditional write

A blob is a chunk of file content (files are cut into 1 MiB chunks) or a piece of a
manifest, named by the SHA-256 of its plain bytes. A manifest is the sorted list of every
path with its metadata and chunk ids, streamed in pieces whose boundaries depend on the
paths, so an unchanged region of a volume yields identical pieces that are stored once.
"""
