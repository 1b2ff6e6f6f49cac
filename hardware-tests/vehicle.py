from dataclasses import dataclass
@dataclass
class VehicleFaults:
    gps_bad_checksums: bool = False
    jammed_lock: bool = False
    ble_dead: bool = False
    pinpad_dead: bool = False
