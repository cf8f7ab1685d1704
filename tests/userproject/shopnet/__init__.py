"""A small user project (not the harness's cases): an image CNN and a token encoder, trained with AdamW + cosine."""
