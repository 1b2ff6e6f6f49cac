"""The device side of firmware updates (SPEC §13), written once for every agent.

- :mod:`.manifest`: the signed manifest checked against the device's firmware keys and
  its target, hardware and bootloader, before anything is downloaded or written;
- :mod:`.download`: HTTP GET with ``Range`` resume into a file, in bounded chunks, capped
  at the manifest's size, the SHA-256 computed while streaming, retries with
  decorrelated-jitter back-off;
- :mod:`.slots`: the A/B slots under ``<state_dir>/slots`` and their ``boot.json``:
  write to the inactive slot, switch atomically, a trial boot confirmed within a deadline
  or rolled back at the next start;
- :mod:`.image`: what an image is for our Python agents and simulated devices;
- :mod:`.boot`: the bootloader step an agent's ``__main__`` runs before it starts;
- :mod:`.updater`: the stages in order, each reported as a FirmwareStatus;
- :mod:`.command`: the FirmwareUpdate handler (spot 0) and the trial at start, for an agent.

Spot boards keep the station's bus staging (SPEC §9.5) behind the same manifest checks.
"""
