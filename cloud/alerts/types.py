"""Fleet alert vocabulary: types, severities, states (seeds 002 and 003)."""

from __future__ import annotations

import enum

from kickstand.cloud.events import catalogue as ev


class AlertType(str, enum.Enum):
    """Seed 002 `AlertType`, extended with the seed 003 types (comment: their seed 003 name)."""

    # seed 002
    UNEXPECTED_UNLOCK = "unexpected-unlock"
    SPOT_IDENTIFY_FAIL = "spot-identify-fail"
    SPOT_HIGH_TEMPERATURE = "spot-high-temperature"
    STATION_POWER_CUT = "station-power-cut"
    STATION_ALARM_TRIGGERED = "station-alarm-triggered"
    VEHICLE_ILLEGAL_MOVING = "vehicle-illegal-moving"
    VEHICLE_DISMANTLING = "vehicle-dismantling"
    VEHICLE_LIFTED = "vehicle-lifted"
    VEHICLE_FALLEN = "vehicle-fallen"
    VEHICLE_OUT_OF_NETWORK_AREA = "vehicle-out-of-network-area"
    # seed 003
    LOCK_BATTERY_LOW = "lock-battery-low"  # lock.bat.low
    VEHICLE_RIDE_OUTSIDE = "vehicle-ride-outside"  # bicycle.ride_outside
    LOCK_NO_TRACKING = "lock-no-tracking"  # lock.no_tracking
    VEHICLE_RETURN_OUTSIDE = "vehicle-return-outside"  # bicycle.return_outside
    VEHICLE_LOST_REPORTED = "vehicle-lost-reported"  # bicycle.lost_reported
    VEHICLE_OUTSIDE_OPERATIONAL_PERIOD = "vehicle-outside-operational-period"
    VEHICLE_TOO_LONG_IDLE = "vehicle-too-long-idle"  # bicycle.too_long_idle
    LOCK_SHUTDOWN = "lock-shutdown"  # lock.shutdown
    # delivery (issue 13): what ingest could not apply, or never received
    DEVICE_MESSAGE_DEAD_LETTERED = "device-message-dead-lettered"
    DEVICE_CLOCK_WRONG = "device-clock-wrong"
    DEVICE_MESSAGES_MISSING = "device-messages-missing"
    # badge rides (issue 14): a badge the cloud does not know, or has blocked, rode offline
    BADGE_RIDE_UNAUTHORIZED = "badge-ride-unauthorized"
    # device contract (issue 14): offline by the one liveness rule (kickstand.cloud.liveness)
    STATION_OFFLINE = "station-offline"
    # fleet (issue 16): a device offline past the threshold, a spot whose lock fails, a
    # vehicle reported in a spot while the cloud holds it in another
    DEVICE_OFFLINE_TOO_LONG = "device-offline-too-long"
    SPOT_LOCK_FAULT = "spot-lock-fault"
    VEHICLE_IN_TWO_SPOTS = "vehicle-in-two-spots"
    # device identity (issue 17): a device's certificate expires soon and was not renewed
    DEVICE_CERTIFICATE_EXPIRING = "device-certificate-expiring"
    # rent timings (issue 16): a trip still running past its network's ``vehicle_stolen``
    VEHICLE_NOT_RETURNED = "vehicle-not-returned"
    # firmware campaigns (issue 18): an update failed on a device, or its new firmware did
    # not confirm itself and the device went back to the old one
    FIRMWARE_UPDATE_FAILED = "firmware-update-failed"
    FIRMWARE_ROLLED_BACK = "firmware-rolled-back"

    def __str__(self) -> str:
        return str(self.value)


#: Seed 003 names of our types, for people matching alerts with that platform.
SEED_003_NAMES: dict[AlertType, str] = {
    AlertType.LOCK_BATTERY_LOW: "lock.bat.low",
    AlertType.VEHICLE_RIDE_OUTSIDE: "bicycle.ride_outside",
    AlertType.LOCK_NO_TRACKING: "lock.no_tracking",
    AlertType.VEHICLE_RETURN_OUTSIDE: "bicycle.return_outside",
    AlertType.VEHICLE_LOST_REPORTED: "bicycle.lost_reported",
    AlertType.VEHICLE_OUTSIDE_OPERATIONAL_PERIOD: "bicycle.outside_operational_period",
    AlertType.VEHICLE_TOO_LONG_IDLE: "bicycle.too_long_idle",
    AlertType.LOCK_SHUTDOWN: "lock.shutdown",
}


class AlertSeverity(str, enum.Enum):
    """Seed 002 `AlertSeverity`."""

    LOW = "low"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self]

    def __str__(self) -> str:
        return str(self.value)


SEVERITY_RANK = {AlertSeverity.LOW: 1, AlertSeverity.HIGH: 2, AlertSeverity.CRITICAL: 3}


class AlertState(str, enum.Enum):
    """Seed 003 states. `stopped` only automatically; resolved / escalated / silenced by people."""

    NEW = "new"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    STOPPED = "stopped"
    SILENCED = "silenced"

    def __str__(self) -> str:
        return str(self.value)


#: An alert in one of these states is "open": a recurrence of its cause counts on it.
OPEN_STATES = (AlertState.NEW, AlertState.ESCALATED, AlertState.SILENCED)
#: What the "current fleet alerts" operation lists (silenced ones are hidden, seed 003).
CURRENT_STATES = (AlertState.NEW, AlertState.ESCALATED)

DEFAULT_SEVERITY: dict[AlertType, AlertSeverity] = {
    AlertType.UNEXPECTED_UNLOCK: AlertSeverity.CRITICAL,
    AlertType.SPOT_IDENTIFY_FAIL: AlertSeverity.LOW,
    AlertType.SPOT_HIGH_TEMPERATURE: AlertSeverity.HIGH,
    AlertType.STATION_POWER_CUT: AlertSeverity.CRITICAL,
    AlertType.STATION_ALARM_TRIGGERED: AlertSeverity.CRITICAL,
    AlertType.VEHICLE_ILLEGAL_MOVING: AlertSeverity.HIGH,
    AlertType.VEHICLE_DISMANTLING: AlertSeverity.CRITICAL,
    AlertType.VEHICLE_LIFTED: AlertSeverity.LOW,
    AlertType.VEHICLE_FALLEN: AlertSeverity.LOW,
    AlertType.VEHICLE_OUT_OF_NETWORK_AREA: AlertSeverity.HIGH,
    AlertType.LOCK_BATTERY_LOW: AlertSeverity.LOW,
    AlertType.VEHICLE_RIDE_OUTSIDE: AlertSeverity.HIGH,
    AlertType.LOCK_NO_TRACKING: AlertSeverity.HIGH,
    AlertType.VEHICLE_RETURN_OUTSIDE: AlertSeverity.LOW,
    AlertType.VEHICLE_LOST_REPORTED: AlertSeverity.HIGH,
    AlertType.VEHICLE_OUTSIDE_OPERATIONAL_PERIOD: AlertSeverity.LOW,
    AlertType.VEHICLE_TOO_LONG_IDLE: AlertSeverity.LOW,
    AlertType.LOCK_SHUTDOWN: AlertSeverity.HIGH,
    # A message kept for an operator may be a lost ride or a bug to fix: look soon.
    AlertType.DEVICE_MESSAGE_DEAD_LETTERED: AlertSeverity.HIGH,
    # Its messages are still applied (at the receive time): a device to fix, no harm yet.
    AlertType.DEVICE_CLOCK_WRONG: AlertSeverity.LOW,
    # Events lost for good may be rides never billed.
    AlertType.DEVICE_MESSAGES_MISSING: AlertSeverity.HIGH,
    # A ride the station allowed from a stale list: recorded, to be settled by a person.
    AlertType.BADGE_RIDE_UNAUTHORIZED: AlertSeverity.HIGH,
    # Nobody can rent or return a vehicle there while it is down.
    AlertType.STATION_OFFLINE: AlertSeverity.HIGH,
    # Down for hours: someone has to go there.
    AlertType.DEVICE_OFFLINE_TOO_LONG: AlertSeverity.CRITICAL,
    # A jammed lock holds a vehicle (or refuses one): the spot is lost until repaired.
    AlertType.SPOT_LOCK_FAULT: AlertSeverity.HIGH,
    # The cloud moved the vehicle; one of the two stations may be wrong about its spot.
    AlertType.VEHICLE_IN_TWO_SPOTS: AlertSeverity.LOW,
    # Once it expires the broker refuses the device: the station or vehicle is lost until
    # someone re-provisions it on site.
    AlertType.DEVICE_CERTIFICATE_EXPIRING: AlertSeverity.HIGH,
    # The network considers the vehicle stolen: someone has to find it (or the rider).
    AlertType.VEHICLE_NOT_RETURNED: AlertSeverity.CRITICAL,
    # The device still runs its old firmware: someone looks before the campaign goes on.
    AlertType.FIRMWARE_UPDATE_FAILED: AlertSeverity.HIGH,
    AlertType.FIRMWARE_ROLLED_BACK: AlertSeverity.HIGH,
}

# Outbox topics of alert changes: defined in the event catalogue, named here for the rules.
ALERT_CREATED = ev.ALERT_CREATED
ALERT_UPDATED = ev.ALERT_UPDATED  # recurrence counted, reopened, severity raised
ALERT_RESOLVED = ev.ALERT_RESOLVED
ALERT_ESCALATED = ev.ALERT_ESCALATED
ALERT_SILENCED = ev.ALERT_SILENCED
ALERT_STOPPED = ev.ALERT_STOPPED
