"""The lab's stand-ins (never shipped): k3s, systemctl and the K3s installer."""
