"""The verification harness: the served models checked against sklearn
through the real stack (parity: python -m verify.parity, make parity), and
faults under load (chaos: python -m verify.chaos, make chaos).
"""
