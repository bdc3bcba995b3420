"""The switch: gRPC services, the `medswitch` command and the composition root.

The only package that knows gRPC; it joins the pure adjudication engine to the
PostgreSQL ledger.
"""
