"""pycrio systemd cgroup driver."""
