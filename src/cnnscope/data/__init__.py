"""What a dataset is: built-in sources, npz: and folder: datasets, official formats, downloads, the cache,
preprocessing and the Dataset."""
