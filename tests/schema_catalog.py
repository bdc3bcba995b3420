"""The schema a database holds, read from its catalogs, as one sorted description.

Why: the schema is made by SQL files (ledger/migrations/) and checked
against a committed description of it (ledger/schema.snapshot), as the
generated proto code is checked against the .proto. A test that runs the
migrations and compares what they made, object by object, catches a
migration that does more or less than intended, and lets the migrations be
rewritten (squashed) with proof that nothing changed.

`describe(conn)` returns {object key: {attribute: value}}, e.g.
`function ms_post(text,text,text[],bigint[])` -> its arguments, result,
body, volatility, SECURITY DEFINER, SET options and rights. It covers the
non-system schemas: tables and views (columns in order with their types,
defaults, nullability and collations; storage options; rights, column
rights included), constraints, indexes, composite/enum/domain types,
functions, triggers, sequences (and how far they have counted), policies,
the rows the schema itself seeds (without their timestamps), default
privileges, and the roles that hold rights (their attributes and
memberships). Rights are the effective ones (a never-granted object shows
PostgreSQL's default), so how a right came to be does not matter, only
what it is. The connecting (owner) user is written `<owner>`, so the
description does not depend on who migrated. Left out, as not the
schema's: the `schema_version` bookkeeping rows, whether a role may log in
(ledger.db decides that per deployment), and anything outside the
database (server settings, other databases).

Commands (from the repository root):
    python -m tests.schema_catalog --write     regenerate ledger/schema.snapshot
    python -m tests.schema_catalog --compare OLD_DIR NEW_DIR
        build one database from each migrations directory and list every
        difference (exit 1 if any)
Both start a throwaway embedded PostgreSQL (pgserver) in a temporary
directory.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg

from ledger import db

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO_ROOT / "ledger" / "schema.snapshot"
# The first business day of a database described for the snapshot (the
# open day's row is one of the rows described).
FIRST_DAY = date(2026, 11, 20)
OWNER = "<owner>"
ROWS_LISTED_MAX = 16  # tables with more seeded rows are described by count and digest
REGENERATE = "python -m tests.schema_catalog --write"

Description = dict[str, dict[str, Any]]

# Every query yields (key, attributes as jsonb); `$1` is the owner's name.
USER_SCHEMAS = """
    SELECT n.oid FROM pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
"""


def _role(oid: str) -> str:
    """SQL: the name of the role `oid` (0 is PUBLIC; the owner is `<owner>`)."""
    return (
        f"CASE WHEN {oid} = 0 THEN 'PUBLIC' WHEN pg_get_userbyid({oid}) = $1 THEN '<owner>'"
        f" ELSE pg_get_userbyid({oid}) END"
    )


def _acl(acl: str, owner: str) -> str:
    """SQL: an ACL as a sorted jsonb array of `grantee: PRIVILEGE, ...` lines
    (`*` marks a grant option; a grantor other than the object's owner is named)."""
    return f"""(SELECT coalesce(jsonb_agg(x.line ORDER BY x.line), '[]') FROM (
        SELECT ({_role("a.grantee")}) || ': '
               || string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END,
                             ', ' ORDER BY a.privilege_type)
               || CASE WHEN a.grantor <> {owner}
                       THEN ' (granted by ' || ({_role("a.grantor")}) || ')' ELSE '' END AS line
        FROM aclexplode({acl}) a GROUP BY a.grantee, a.grantor) x)"""


def _rights(acl: str, kind: str, owner: str) -> str:
    """SQL: the effective rights on an object: its ACL or, without one, the default."""
    return _acl(f"coalesce({acl}, acldefault('{kind}', {owner}))", owner)


def _sorted(expression: str, source: str) -> str:
    """SQL: a sorted jsonb array of `expression` over `source` ([] when none)."""
    return (
        f"(SELECT coalesce(jsonb_agg(v ORDER BY v), '[]')"
        f" FROM (SELECT {expression} AS v FROM {source}) x)"
    )


QUERIES: tuple[str, ...] = (
    f"""SELECT 'schema ' || n.nspname, jsonb_build_object(
            'owner', {_role("n.nspowner")},
            'rights', {_rights("n.nspacl", "n", "n.nspowner")})
        FROM pg_namespace n WHERE n.oid IN ({USER_SCHEMAS})""",
    """SELECT 'extension ' || e.extname, jsonb_build_object(
            'version', e.extversion, 'schema', e.extnamespace::regnamespace::text)
        FROM pg_extension e""",
    f"""SELECT CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'view ' ELSE 'table ' END
               || c.oid::regclass::text,
            jsonb_build_object(
            'kind', c.relkind, 'persistence', c.relpersistence,
            'options', coalesce(to_jsonb(c.reloptions), '[]'),
            'row_security', c.relrowsecurity, 'force_row_security', c.relforcerowsecurity,
            'replica_identity', c.relreplident,
            'inherits', (SELECT coalesce(jsonb_agg(i.inhparent::regclass::text ORDER BY i.inhseqno),
                                         '[]') FROM pg_inherits i WHERE i.inhrelid = c.oid),
            'columns', (SELECT jsonb_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
            'definition', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
            'owner', {_role("c.relowner")},
            'rights', {_rights("c.relacl", "r", "c.relowner")})
        FROM pg_class c
        WHERE c.relnamespace IN ({USER_SCHEMAS}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')""",
    f"""SELECT 'column ' || c.oid::regclass::text || '.' || a.attname, jsonb_build_object(
            'type', format_type(a.atttypid, a.atttypmod), 'not_null', a.attnotnull,
            'default', pg_get_expr(d.adbin, d.adrelid),
            'collation', CASE WHEN a.attcollation <> t.typcollation
                              THEN a.attcollation::regcollation::text END,
            'identity', nullif(a.attidentity, ''), 'generated', nullif(a.attgenerated, ''),
            'rights', CASE WHEN a.attacl IS NOT NULL THEN {_acl("a.attacl", "c.relowner")} END)
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace IN ({USER_SCHEMAS}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped""",
    f"""SELECT 'constraint ' || coalesce(k.conrelid::regclass::text, k.contypid::regtype::text)
               || '.' || k.conname,
            jsonb_build_object(
            'type', k.contype, 'definition', pg_get_constraintdef(k.oid),
            'deferrable', k.condeferrable, 'deferred', k.condeferred,
            'validated', k.convalidated, 'no_inherit', k.connoinherit)
        FROM pg_constraint k WHERE k.connamespace IN ({USER_SCHEMAS})""",
    f"""SELECT 'index ' || i.indexrelid::regclass::text, jsonb_build_object(
            'definition', pg_get_indexdef(i.indexrelid),
            'table', i.indrelid::regclass::text)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relnamespace IN ({USER_SCHEMAS})""",
    f"""SELECT 'type ' || t.oid::regtype::text, jsonb_build_object(
            'kind', t.typtype,
            'attributes', CASE WHEN t.typtype = 'c' THEN (
                SELECT jsonb_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                    || CASE WHEN a.attcollation <> at.typcollation
                            THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
                    ORDER BY a.attnum)
                FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
                WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
            'labels', CASE WHEN t.typtype = 'e' THEN (SELECT jsonb_agg(e.enumlabel
                ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) END,
            'base', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
            'not_null', t.typnotnull, 'default', t.typdefault,
            'owner', {_role("t.typowner")},
            'rights', {_rights("t.typacl", "T", "t.typowner")})
        FROM pg_type t
        WHERE t.typnamespace IN ({USER_SCHEMAS}) AND t.typtype IN ('c', 'e', 'd', 'r', 'm')
          AND t.typelem = 0
          AND NOT EXISTS (SELECT 1 FROM pg_class c
                          WHERE c.oid = t.typrelid AND c.relkind <> 'c')""",
    f"""SELECT 'function ' || p.oid::regprocedure::text, jsonb_build_object(
            'kind', p.prokind, 'arguments', pg_get_function_arguments(p.oid),
            'result', pg_get_function_result(p.oid), 'language', l.lanname,
            'volatility', p.provolatile, 'security_definer', p.prosecdef,
            'strict', p.proisstrict, 'leakproof', p.proleakproof, 'parallel', p.proparallel,
            'cost', p.procost, 'rows', p.prorows,
            'config', (SELECT coalesce(jsonb_agg(s ORDER BY s), '[]')
                       FROM unnest(p.proconfig) s),
            'body', to_jsonb(regexp_split_to_array(p.prosrc, E'\\n')),
            'owner', {_role("p.proowner")},
            'rights', {_rights("p.proacl", "f", "p.proowner")})
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace IN ({USER_SCHEMAS})""",
    f"""SELECT 'trigger ' || t.tgrelid::regclass::text || '.' || t.tgname, jsonb_build_object(
            'definition', pg_get_triggerdef(t.oid), 'enabled', t.tgenabled)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace IN ({USER_SCHEMAS}) AND NOT t.tgisinternal""",
    f"""SELECT 'sequence ' || s.seqrelid::regclass::text, jsonb_build_object(
            'type', s.seqtypid::regtype::text, 'start', s.seqstart,
            'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
            'cache', s.seqcache, 'cycle', s.seqcycle,
            'owned_by', (SELECT d.refobjid::regclass::text || '.' || a.attname
                         FROM pg_depend d JOIN pg_attribute a
                           ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                           AND d.deptype IN ('a', 'i')),
            'last_value', ps.last_value,
            'owner', {_role("c.relowner")},
            'rights', {_rights("c.relacl", "s", "c.relowner")})
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_sequences ps ON ps.schemaname = c.relnamespace::regnamespace::text
                            AND ps.sequencename = c.relname
        WHERE c.relnamespace IN ({USER_SCHEMAS})""",
    f"""SELECT 'policy ' || p.polrelid::regclass::text || '.' || p.polname, jsonb_build_object(
            'command', p.polcmd, 'permissive', p.polpermissive,
            'roles', {_sorted(_role("r"), "unnest(p.polroles) r")},
            'using', pg_get_expr(p.polqual, p.polrelid),
            'check', pg_get_expr(p.polwithcheck, p.polrelid))
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        WHERE c.relnamespace IN ({USER_SCHEMAS})""",
    f"""SELECT 'default privileges of ' || ({_role("d.defaclrole")})
               || CASE WHEN d.defaclnamespace = 0 THEN ''
                       ELSE ' in ' || d.defaclnamespace::regnamespace::text END
               || ' on ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                  WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' ELSE 'schemas' END,
            jsonb_build_object('rights', {_acl("d.defaclacl", "d.defaclrole")})
        FROM pg_default_acl d""",
    # user objects' comments (OIDs from FirstNormalObjectId up)
    """SELECT 'comment on ' || pg_describe_object(d.classoid, d.objoid, d.objsubid),
            jsonb_build_object('text', d.description)
        FROM pg_description d WHERE d.objoid >= 16384""",
)

# The roles named in the rights above (other than the owner and PUBLIC).
MEMBER_OF = _sorted(
    "m.roleid::regrole::text || CASE WHEN m.admin_option THEN ' WITH ADMIN OPTION' ELSE '' END",
    "pg_auth_members m WHERE m.member = r.oid",
)
ROLES_QUERY = f"""
    SELECT 'role ' || r.rolname, jsonb_build_object(
        'superuser', r.rolsuper, 'inherit', r.rolinherit, 'create_role', r.rolcreaterole,
        'create_db', r.rolcreatedb, 'replication', r.rolreplication,
        'bypass_row_security', r.rolbypassrls, 'connection_limit', r.rolconnlimit,
        'member_of', {MEMBER_OF})
    FROM pg_roles r WHERE r.rolname = ANY($1::text[]) AND r.oid >= 16384
"""


def _named_roles(description: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every role named as a grantee in the description's rights."""
    names: set[str] = set()
    for attributes in description.values():
        for right in attributes.get("rights") or ():
            names.add(right.split(":", 1)[0])
    return sorted(names - {OWNER, "PUBLIC"})


async def _rows(conn: asyncpg.Connection) -> Description:
    """The rows in each table (the schema's seeded rows), without timestamps."""
    tables = await conn.fetch(
        f"""SELECT c.oid::regclass::text AS name,
                   array_agg(quote_ident(a.attname) ORDER BY a.attnum) AS columns
            FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
            WHERE c.relnamespace IN ({USER_SCHEMAS}) AND c.relkind IN ('r', 'p')
              AND a.attnum > 0 AND NOT a.attisdropped
              AND a.atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype)
              AND c.relname <> 'schema_version'
            GROUP BY c.oid"""
    )
    found: Description = {}
    for table in tables:
        rows = await conn.fetchval(
            f"SELECT coalesce(array_agg(r ORDER BY r), '{{}}') FROM"
            f" (SELECT ROW({', '.join(table['columns'])})::text AS r FROM {table['name']}) t"
        )
        if not rows:
            continue
        if len(rows) <= ROWS_LISTED_MAX:
            found[f"rows {table['name']}"] = {"count": len(rows), "rows": list(rows)}
        else:
            digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
            found[f"rows {table['name']}"] = {"count": len(rows), "sha256": digest}
    return found


def _attributes(value: str | dict[str, Any]) -> dict[str, Any]:
    """A jsonb object (text, without a codec) without its null attributes."""
    loaded: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
    return {name: v for name, v in loaded.items() if v is not None}


async def describe(conn: asyncpg.Connection) -> Description:
    """The schema of the connected database, normalized and sorted by key."""
    owner = await conn.fetchval("SELECT current_user")
    found: Description = {}
    for query in QUERIES:
        args = (owner,) if "$1" in query else ()
        for key, attributes in await conn.fetch(query, *args):
            assert key not in found, f"two objects described as {key!r}"
            found[key] = _attributes(attributes)
    for key, attributes in await conn.fetch(ROLES_QUERY, _named_roles(found)):
        found[key] = _attributes(attributes)
    found.update(await _rows(conn))
    return dict(sorted(found.items()))


def differences(expected: Description, actual: Description) -> list[str]:
    """Every difference, object by object in key order, as readable lines."""
    lines: list[str] = []
    for key in sorted(expected.keys() | actual.keys()):
        if key not in actual:
            lines.append(f"{key}: missing")
        elif key not in expected:
            lines.append(f"{key}: not expected")
        else:
            lines.extend(_attribute_differences(key, expected[key], actual[key]))
    return lines


def _attribute_differences(
    key: str, expected: Mapping[str, Any], actual: Mapping[str, Any]
) -> Iterable[str]:
    for name in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(name), actual.get(name)
        if want != got:
            yield f"{key}: {name} is {_shown(got)}, expected {_shown(want)}"


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------
# The snapshot file: a header of comment lines, then the description as JSON.

HEADER = f"""\
# The schema ledger/migrations/ make, as tests/schema_catalog.py describes it
# (tests/integration/test_schema.py checks a freshly migrated
# database against it, object by object). After an intended schema change
# (a new migration), regenerate it and review the diff:
#     {REGENERATE}
"""


def render(description: Description) -> str:
    return HEADER + json.dumps(description, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def load(path: Path = SNAPSHOT) -> Description:
    text = path.read_text("utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    loaded: Description = json.loads(body)
    return loaded


# ---------------------------------------------------------------------------
# Databases built from a migrations directory, on a throwaway server.


@asynccontextmanager
async def throwaway_server() -> AsyncIterator[str]:
    """The superuser URL of the `postgres` database of a new embedded server."""
    from ledger.pgserver_import import import_pgserver

    root = Path(tempfile.mkdtemp(prefix="mscat-"))  # short: the socket lives there
    server = import_pgserver().get_server(root / "pg", cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _url(base_url: str, dbname: str) -> str:
    prefix, _, query = base_url.partition("?")
    return f"{prefix.rsplit('/', 1)[0]}/{dbname}?{query}"


async def describe_migrated(base_url: str, dbname: str, directory: Path) -> Description:
    """Create `dbname`, migrate it from `directory` (first day FIRST_DAY), describe it."""
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(_url(base_url, dbname))
    try:
        await db.migrate(conn, directory=directory, first_day=FIRST_DAY)
        return await describe(conn)
    finally:
        await conn.close()


async def _write() -> None:
    async with throwaway_server() as url:
        description = await describe_migrated(url, "ms_snapshot", db.MIGRATIONS_DIR)
    SNAPSHOT.write_text(render(description), "utf-8")
    print(f"wrote {SNAPSHOT.relative_to(REPO_ROOT)}: {len(description)} objects")


async def _compare(old: Path, new: Path) -> int:
    # A server each: roles are the server's, made by whichever migrates first.
    async with throwaway_server() as url:
        before = await describe_migrated(url, "ms_old", old)
    async with throwaway_server() as url:
        after = await describe_migrated(url, "ms_new", new)
    found = differences(before, after)
    print(f"{len(before)} objects from {old}, {len(after)} from {new}")
    for line in found:
        print(line)
    print(f"{len(found)} differences")
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help=f"regenerate {SNAPSHOT.name}")
    group.add_argument("--compare", nargs=2, type=Path, metavar=("OLD_DIR", "NEW_DIR"))
    args = parser.parse_args(argv)
    if args.write:
        asyncio.run(_write())
        return 0
    return asyncio.run(_compare(*args.compare))


if __name__ == "__main__":
    sys.exit(main())
