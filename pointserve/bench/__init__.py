"""Engine benchmarks: timing helpers and (later) the trtexec-style ``pointserve bench`` report."""
