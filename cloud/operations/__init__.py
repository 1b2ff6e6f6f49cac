"""Operations of the field: trips seen by operators (stop billing), maintenances of
stations, spots and vehicles, and riders' reports (issue 16)."""
