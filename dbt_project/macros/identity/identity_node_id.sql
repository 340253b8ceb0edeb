{#- The graph node of an identity: a bigint taken from the first 60 bits of the md5
    of "<namespace>:<normalised value>". 60 bits keep the number positive in a
    signed bigint. Two identities sharing a node would be merged: the chance of any
    such collision is about n^2 / 2^61, one in a million at 1.5 million identities
    and one in a thousand at 50 million. The same pair gives the same node in every
    build, so component ids (the smallest node of a component) stay stable while
    the component does. -#}
{% macro identity_node_id(namespace_sql, value_sql) -%}
    ('x' || substr(md5({{ namespace_sql }} || ':' || {{ value_sql }}), 1, 15))::bit(60)::bigint
{%- endmacro %}
