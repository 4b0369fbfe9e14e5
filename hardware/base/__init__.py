"""The mobile base: the AgileX Tracer over CAN (driver, frame layouts, emulator, safety) and wheel odometry."""
