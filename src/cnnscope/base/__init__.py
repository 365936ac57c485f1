"""The bottom layer: errors, files written atomically and read with bounds, PNG tiles, metrics, progress and the thread
budget. Imports nothing else of cnnscope."""
