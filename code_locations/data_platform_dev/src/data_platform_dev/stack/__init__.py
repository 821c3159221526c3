"""The local stack: the same processes as the cluster, supervised by one program."""
