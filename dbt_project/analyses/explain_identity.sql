{#- Why an identity belongs to its profile, as SQL an analyst compiles and runs:

      dbt compile --select explain_identity \
          --vars '{identity: "Jon.Smith@Example.net", namespace: email}'
      dbt compile --select explain_identity --vars '{profile_id: "5aa1d3a1..."}'

    then run target/compiled/cdp/analyses/explain_identity.sql. The value is
    normalised by the same macros the build uses; without `namespace` every
    namespace is tried. One row per fact, `section` saying which: searched,
    identity, evidence, device_login, kept_apart, never_link. `cdp explain`
    gives the same answer as text.

    Only the bridge and profile marts are refs. The intermediate models and the
    configuration seeds are looked up by name when compiling, so a renamed or
    missing model drops its section instead of breaking the project's parse. -#}
{%- set typed = var('identity', '') | string -%}
{%- set only_namespace = var('namespace', '') | string | trim -%}
{%- set typed_profile_id = var('profile_id', '') | string | trim | lower -%}

{%- set observations = adapter.get_relation(
    target.database, 'intermediate', 'int_identity_observations'
) if execute else none -%}
{%- set nodes = adapter.get_relation(
    target.database, 'intermediate', 'int_identity_nodes'
) if execute else none -%}
{%- set device_authentications = adapter.get_relation(
    target.database, 'intermediate', 'int_device_authentications'
) if execute else none -%}
{%- set kept_apart_models = [] -%}
{%- for name in ['int_identity_conflicts', 'int_identity_quarantine'] -%}
    {%- set relation = adapter.get_relation(
        target.database, 'intermediate', name
    ) if execute else none -%}
    {%- if relation is not none -%}
        {%- do kept_apart_models.append(relation) -%}
    {%- endif -%}
{%- endfor %}

with

profile_identities as (

    select * from {{ ref('bdg_profile_identities') }}

),

profiles as (

    select * from {{ ref('dim_profiles') }}

),

typed as (

    select {{ "'" ~ (typed | replace("'", "''")) ~ "'" }}::text as typed_value

),

-- The stored form of the typed value in each namespace, by the build's own
-- normaliser, validity pattern and blocked lists.
normalised as (

    select
        namespaces.namespace,
        namespaces.normaliser,
        namespaces.validity_pattern,
        {{ normalize_identity('namespaces.normaliser', 'typed.typed_value') }}
            as identity_value
    from {{ ref('identity_namespaces') }} as namespaces
    cross join typed
    {%- if only_namespace %}
    where namespaces.namespace = '{{ only_namespace | replace("'", "") }}'
    {%- endif %}

),

searched as (

    select
        normalised.namespace,
        normalised.identity_value,
        exists (
            select 1
            from {{ ref('identity_blocked_values') }} as blocked
            where blocked.namespace in (normalised.namespace, 'any')
                and blocked.value in (
                    lower(btrim(typed.typed_value)), normalised.identity_value
                )
        ) or exists (
            select 1
            from {{ ref('identity_blocked_patterns') }} as blocked
            where blocked.namespace in (normalised.namespace, 'any')
                and normalised.identity_value ~ blocked.pattern
        ) as is_blocked
    from normalised
    cross join typed
    where normalised.identity_value
        ~ coalesce(normalised.validity_pattern, '')
    {%- if not only_namespace %}
        -- Any text hashes to a valid-looking hash: try hashed namespaces only
        -- for what looks like an email or a hash.
        and (
            normalised.normaliser <> 'sha256_hex'
            or typed.typed_value ~ '@'
            or lower(btrim(typed.typed_value)) ~ '^[0-9a-f]{64}$'
        )
    {%- endif %}

),

matched_profiles as (

    select distinct profile_identities.profile_id
    from profile_identities
    inner join searched
        on searched.namespace = profile_identities.namespace
        and searched.identity_value = profile_identities.identity_value

    union

    select profiles.profile_id
    from profiles
    where profiles.profile_id = '{{ typed_profile_id | replace("'", "") }}'

),

held as (

    select
        profile_identities.profile_id,
        profile_identities.namespace,
        profile_identities.identity_value,
        profile_identities.link_rule,
        profile_identities.is_anchor,
        profile_identities.observation_count,
        profiles.is_anonymous
    from profile_identities
    inner join matched_profiles
        on matched_profiles.profile_id = profile_identities.profile_id
    left join profiles
        on profiles.profile_id = profile_identities.profile_id

),

searched_rows as (

    select
        'searched' as section,
        cast(null as text) as profile_id,
        searched.namespace,
        searched.identity_value,
        cast(null as text) as link_rule,
        cast(null as text) as dataset,
        cast(null as text) as record_key,
        cast(null as text) as file_name,
        cast(null as integer) as line_number,
        cast(null as timestamptz) as observed_at,
        case when searched.is_blocked then 'blocked' end as detail
    from searched

),

identity_rows as (

    select
        'identity' as section,
        held.profile_id,
        held.namespace,
        held.identity_value,
        held.link_rule,
        cast(null as text) as dataset,
        cast(null as text) as record_key,
        cast(null as text) as file_name,
        cast(null as integer) as line_number,
        cast(null as timestamptz) as observed_at,
        case when held.is_anchor then 'anchor; ' else '' end
        || case when held.is_anonymous then 'anonymous profile; ' else '' end
        || held.observation_count || ' records' as detail
    from held

),

evidence_rows as (

{%- if observations is not none %}
    select
        'evidence' as section,
        held.profile_id,
        held.namespace,
        held.identity_value,
        held.link_rule,
        observed.dataset,
        observed.record_key,
        observed._file_name as file_name,
        observed._line_number as line_number,
        observed.observed_at,
        cast(null as text) as detail
    from held
    inner join {{ observations }} as observed
        on observed.namespace = held.namespace
        and observed.identity_value = held.identity_value
{%- else %}
    select * from searched_rows where false
{%- endif %}

),

device_login_rows as (

{%- if device_authentications is not none %}
    select
        'device_login' as section,
        authentication.profile_id,
        held.namespace,
        held.identity_value,
        cast(null as text) as link_rule,
        authentication.dataset,
        authentication.source_record_id as record_key,
        cast(null as text) as file_name,
        authentication._line_number as line_number,
        authentication.authenticated_at as observed_at,
        case
            when authentication.authenticated_at = max(
                authentication.authenticated_at
            ) over (partition by authentication.ecid)
                then 'latest authentication: owns the device now'
            else 'events after it and before the next go to this profile'
        end as detail
    from held
    inner join {{ device_authentications }} as authentication
        on authentication.ecid = held.identity_value
    where held.namespace = 'ecid'
{%- else %}
    select * from searched_rows where false
{%- endif %}

),

{#- Every column of a conflicts, quarantine or cuts model, as one detail text,
    so a new kind of refusal shows without editing this analysis. -#}
kept_apart_rows as (

{%- for relation in kept_apart_models %}
    {%- set names = adapter.get_columns_in_relation(relation)
        | map(attribute='name') | list %}
    {%- if not loop.first %}

    union all
    {% endif %}
    select
        'kept_apart' as section,
        {{ 'kept.assigned_profile_id' if 'assigned_profile_id' in names
            else 'cast(null as text)' }} as profile_id,
        {{ 'kept.namespace' if 'namespace' in names
            else 'kept_node.namespace' }} as namespace,
        {{ 'kept.identity_value' if 'identity_value' in names
            else 'kept_node.identity_value' }} as identity_value,
        '{{ relation.identifier }}' as link_rule,
        cast(null as text) as dataset,
        cast(null as text) as record_key,
        cast(null as text) as file_name,
        cast(null as integer) as line_number,
        cast(null as timestamptz) as observed_at,
        concat_ws('; '
        {%- for name in names if name not in ('namespace', 'identity_value') %},
            '{{ name }}: ' || kept.{{ adapter.quote(name) }}::text
        {%- endfor %}) as detail
    from {{ relation }} as kept
    {%- if 'namespace' not in names %}
    left join {{ nodes }} as kept_node
        on kept_node.node_id = kept.node_id
    {%- endif %}
    where false
    {%- if 'namespace' in names %}
        or exists (
            select 1
            from held
            where held.namespace = kept.namespace
                and held.identity_value = kept.identity_value
        )
        or exists (
            select 1
            from searched
            where searched.namespace = kept.namespace
                and searched.identity_value = kept.identity_value
        )
    {%- else %}
        or exists (
            select 1
            from held
            where held.namespace = kept_node.namespace
                and held.identity_value = kept_node.identity_value
        )
        or exists (
            select 1
            from searched
            where searched.namespace = kept_node.namespace
                and searched.identity_value = kept_node.identity_value
        )
    {%- endif %}
    {%- for name in names if name.endswith('profile_id') %}
        or kept.{{ name }} in (select held.profile_id from held)
    {%- endfor %}
{%- else %}
    select * from searched_rows where false
{%- endfor %}

),

never_link_rows as (

    select
        'never_link' as section,
        cast(null as text) as profile_id,
        searched.namespace,
        typed.typed_value as identity_value,
        'blocked' as link_rule,
        cast(null as text) as dataset,
        cast(null as text) as record_key,
        cast(null as text) as file_name,
        cast(null as integer) as line_number,
        cast(null as timestamptz) as observed_at,
        'a placeholder or blocked pattern: never links' as detail
    from searched
    cross join typed
    where searched.is_blocked

    union all

    select
        'never_link' as section,
        cast(null as text) as profile_id,
        never_link.namespace_a as namespace,
        never_link.value_a as identity_value,
        'never_link' as link_rule,
        cast(null as text) as dataset,
        cast(null as text) as record_key,
        cast(null as text) as file_name,
        cast(null as integer) as line_number,
        cast(null as timestamptz) as observed_at,
        coalesce(
            'never with ' || never_link.namespace_b || ' ' || never_link.value_b,
            'never with anything'
        ) || ': ' || coalesce(never_link.reason, '') as detail
    from {{ ref('identity_never_link') }} as never_link
    where exists (
        select 1
        from held
        where (
            held.namespace = never_link.namespace_a
            and held.identity_value = never_link.value_a
        ) or (
            held.namespace = never_link.namespace_b
            and held.identity_value = never_link.value_b
        )
    ) or exists (
        select 1
        from searched
        where (
            searched.namespace = never_link.namespace_a
            and searched.identity_value = never_link.value_a
        ) or (
            searched.namespace = never_link.namespace_b
            and searched.identity_value = never_link.value_b
        )
    )

),

explained as (

    select * from searched_rows
    union all
    select * from identity_rows
    union all
    select * from evidence_rows
    union all
    select * from device_login_rows
    union all
    select * from kept_apart_rows
    union all
    select * from never_link_rows

)

select * from explained
