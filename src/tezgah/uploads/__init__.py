"""Uploads: resumable uploads over the tus 1.0 protocol, finished files go to the blob store."""
