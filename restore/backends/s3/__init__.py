"""The S3 object store (boto3): `store.S3Store`, configured by `settings`, with boto3's errors
converted in `errors` and large objects uploaded by `multipart`. See docs/s3.md."""
