{#- Each declared identity value normalised and checked by its namespace's
    configuration (seeds/identity_*.csv), so an analyst changes what links by
    editing those files, not this SQL. -#}
with

observations as (

    select * from {{ ref('int_identity_observations_declared') }}

),

namespaces as (

    select * from {{ ref('identity_namespaces') }}

),

blocked_values as (

    select * from {{ ref('identity_blocked_values') }}

),

blocked_patterns as (

    select * from {{ ref('identity_blocked_patterns') }}

),

-- `any` rows expanded to every namespace, so blocking is an equality join.
blocked_keys as (

    select distinct
        namespaces.namespace,
        blocked_values.value
    from blocked_values
    inner join namespaces
        on blocked_values.namespace in (namespaces.namespace, 'any')

),

-- One alternation per namespace: a single regex test per value, whatever the
-- number of patterns.
namespace_patterns as (

    select
        blocked_patterns.namespace,
        string_agg('(' || blocked_patterns.pattern || ')', '|') as pattern
    from blocked_patterns
    group by blocked_patterns.namespace

),

namespace_rules as (

    select
        namespaces.namespace,
        namespaces.kind,
        namespaces.priority,
        namespaces.normaliser,
        namespaces.validity_pattern,
        namespace_patterns.pattern as blocked_pattern
    from namespaces
    left join namespace_patterns
        on namespace_patterns.namespace = namespaces.namespace

),

-- "namespace:value" keys in one array, read once: a scan of a few dozen keys
-- per value beats sorting millions of rows for a join.
blocked_key_list as (

    select
        array_agg(blocked_keys.namespace || ':' || blocked_keys.value)
            as blocked_keys
    from blocked_keys

),

-- `offset 0` here and in `checked` keeps Postgres from inlining the step into
-- the next one, where it would evaluate the normaliser (a dozen regexes for a
-- phone) and the checks again at every mention of their result. Unlike a
-- materialized CTE it computes each row once without writing it aside.
normalised as (

    select
        observations.*,
        namespace_rules.namespace is not null as is_known_namespace,
        namespace_rules.kind,
        namespace_rules.priority,
        namespace_rules.validity_pattern,
        namespace_rules.blocked_pattern,
        {{ normalize_identity(
            'namespace_rules.normaliser', 'observations.raw_value'
        ) }} as normalised_value
    from observations
    left join namespace_rules
        on namespace_rules.namespace = observations.namespace
    offset 0

),

checked as (

    select
        normalised.*,
        case
            when not normalised.is_known_namespace then 'unknown_namespace'
            when btrim(normalised.raw_value) = '' then 'empty'
            when normalised.namespace || ':' || lower(btrim(normalised.raw_value))
                    = any(blocked_key_list.blocked_keys)
                or normalised.namespace || ':' || normalised.normalised_value
                    = any(blocked_key_list.blocked_keys)
                then 'blocked_value'
            when normalised.normalised_value is null
                or normalised.normalised_value
                    !~ coalesce(normalised.validity_pattern, '')
                then 'invalid'
            when normalised.normalised_value ~ normalised.blocked_pattern
                then 'blocked_pattern'
        end as rejection_reason
    from normalised
    cross join blocked_key_list
    offset 0

),

final as (

    select
        md5(checked.source_record_id || ':' || checked.identity_column)
            as observation_id,
        checked.dataset,
        checked.source_record_id,
        checked.record_key,
        checked.is_record_key,
        checked.identity_column,
        checked.namespace,
        checked.kind,
        checked.priority,
        case
            when checked.rejection_reason is null
                then checked.normalised_value
        end as identity_value,
        case
            when checked.rejection_reason is null
                then {{ identity_node_id(
                    'checked.namespace', 'checked.normalised_value'
                ) }}
        end as node_id,
        checked.rejection_reason,
        -- Which pattern blocked it, looked up only for the few values that
        -- a pattern blocked.
        case
            when checked.rejection_reason = 'blocked_pattern' then (
                select min(blocked_patterns.reason)
                from blocked_patterns
                where blocked_patterns.namespace = checked.namespace
                    and checked.normalised_value ~ blocked_patterns.pattern
            )
        end as rejection_detail,
        checked.rejection_reason is null as is_linkable,
        checked.observed_at,
        checked._batch_id,
        checked._file_name,
        checked._line_number
    from checked

)

select * from final
