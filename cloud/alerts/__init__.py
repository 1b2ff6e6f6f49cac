"""Fleet alerts: rules fed by device messages and silence, one open alert per cause."""
