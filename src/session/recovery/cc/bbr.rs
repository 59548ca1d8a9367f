//! A model-based controller after BBR: a bottleneck-bandwidth and minimum-round-trip model steering the pacing rate and the window.
