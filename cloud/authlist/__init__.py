"""The local authorization list of each network's stations (SPEC §7.4): versions, FULL and
DIFF updates, and what each station confirmed holding. See :mod:`.service`."""
