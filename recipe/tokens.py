"""Special tokens shared by the model (which adds them) and the data (which writes them into text)."""

END_OF_CHUNK = "<|endofchunk|>"
IMAGE = "<image>"
PAD = "<PAD>"
IGNORE_INDEX = -100
