#!/bin/sh
# Patroni's post_bootstrap (deploy/ha/patroni.yml), run once on the node that
# initialises the cluster, with a superuser connection string as $1: the
# MedSwitch schema owner (CREATEROLE: the migrations create the roles
# medswitch_app and medswitch_operator) and its database. The password is MEDSWITCH_DB_PASSWORD.
set -eu
: "${MEDSWITCH_DB_PASSWORD:?set MEDSWITCH_DB_PASSWORD}"
psql "$1" -v ON_ERROR_STOP=1 -v pw="$MEDSWITCH_DB_PASSWORD" <<'SQL'
CREATE ROLE medswitch LOGIN CREATEROLE PASSWORD :'pw';
CREATE DATABASE medswitch OWNER medswitch;
SQL
