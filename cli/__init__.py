"""The `bank` console script (click and rich), a front end over `bank`."""
