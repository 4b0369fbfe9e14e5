"""The ALOHA robot: configuration, AlohaRobot (followers + cameras), LeaderArms teleoperator, emulated rig."""
