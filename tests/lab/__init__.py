"""The lab: hosts in namespaces with real sshd, sudo and etcd (harness.py), a stand-in k3s
(standin/), a driver that runs a program's recorded steps over SSH (driver.py) and the
K3sBootstrap program the lab tests bring up (cluster.py). Tests: tests/test_lab_*.py."""
