{#- materialized='connected_components'

    The model's SQL selects node_a, node_b (bigint) pairs to union; a self pair
    (n, n) makes a node without links appear. The table holds one row per node:
    node_id, component_id, where component_id is the smallest node_id of the
    node's connected component.

    The previous build's edges are kept in <model>__edges. A build compares them
    with the new ones and recomputes only the components that contain an end of
    an added or removed edge: components that only gained edges start from their
    previous labels, components that lost one start from scratch (a removal can
    split them). Other rows are left untouched. --full-refresh recomputes
    everything and gives the same table. Every build appends a row to
    <model>__runs: mode, rounds, edges, nodes recomputed, seconds. -#}

{% materialization connected_components, default %}
    {%- set started_at = modules.datetime.datetime.now() -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set edges_relation = connected_components_sibling('edges') -%}
    {%- set runs_relation = connected_components_sibling('runs') -%}
    {%- set previous_edges = load_cached_relation(edges_relation) -%}
    {%- set max_rounds = config.get('max_rounds', 1000) | int -%}

    {%- set full_build = should_full_refresh()
        or existing_relation is none
        or previous_edges is none
        or existing_relation.type != 'table' -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% do connected_components_load_batch(sql) %}

    {% if full_build %}
        {% do connected_components_plan_full() %}
    {% else %}
        {% do connected_components_plan_changes(target_relation, edges_relation) %}
    {% endif %}

    {% set rounds = connected_components_converge(max_rounds) %}
    {% set recomputed = run_query('select count(*) from cc_parent').columns[0].values()[0] %}

    {% if full_build %}
        {% do connected_components_replace(target_relation, existing_relation) %}
        {% do connected_components_replace_edges(edges_relation, previous_edges) %}
    {% else %}
        {% do connected_components_apply_changes(target_relation, edges_relation) %}
    {% endif %}

    {% set edge_count = run_query('select count(*) from cc_batch_edges').columns[0].values()[0] %}
    {% set seconds = (modules.datetime.datetime.now() - started_at).total_seconds() %}
    {% do connected_components_record_run(
        runs_relation, 'full' if full_build else 'incremental',
        rounds, edge_count, recomputed, seconds) %}
    {% do connected_components_drop_work_tables() %}

    {% do persist_docs(target_relation, model) %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {% call noop_statement('main', 'connected_components ' ~ ('full' if full_build
        else 'incremental') ~ ': ' ~ recomputed ~ ' nodes recomputed in ' ~ rounds
        ~ ' rounds') %}{% endcall %}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}


{% macro connected_components_sibling(suffix) %}
    {{ return(api.Relation.create(
        database=this.database, schema=this.schema,
        identifier=this.identifier ~ '__' ~ suffix, type='table')) }}
{% endmacro %}


{#- One row per undirected edge, smaller node first, so the diff with the previous
    build does not depend on the order the model wrote the pair in. -#}
{% macro connected_components_load_batch(model_sql) %}
    {% call statement('cc_load_batch') %}
        drop table if exists cc_batch_edges;

        create temporary table cc_batch_edges as
        with model_edges as (
            {{ model_sql }}
        )

        select distinct
            least(model_edges.node_a, model_edges.node_b) as node_a,
            greatest(model_edges.node_a, model_edges.node_b) as node_b
        from model_edges
        where model_edges.node_a is not null
            and model_edges.node_b is not null;

        analyze cc_batch_edges;
    {% endcall %}
{% endmacro %}


{% macro connected_components_plan_full() %}
    {% call statement('cc_plan_full') %}
        drop table if exists cc_region_edges;
        drop table if exists cc_seeds;

        create temporary table cc_region_edges as
        select batch.node_a, batch.node_b from cc_batch_edges as batch;

        create temporary table cc_seeds (node_id bigint, seed_id bigint);
    {% endcall %}
{% endmacro %}


{#- The region to recompute: every node of a previous component that holds an
    end of an added or removed edge, plus nodes seen for the first time. Such a
    region is closed: an unchanged edge never leaves its previous component and
    an added edge has both ends in the region. -#}
{% macro connected_components_plan_changes(target_relation, edges_relation) %}
    {% call statement('cc_plan_changes') %}
        drop table if exists cc_added;
        drop table if exists cc_removed;
        drop table if exists cc_touched;
        drop table if exists cc_region;
        drop table if exists cc_region_edges;
        drop table if exists cc_seeds;

        create temporary table cc_added as
        select batch.node_a, batch.node_b from cc_batch_edges as batch
        except
        select previous.node_a, previous.node_b from {{ edges_relation }} as previous;

        create temporary table cc_removed as
        select previous.node_a, previous.node_b from {{ edges_relation }} as previous
        except
        select batch.node_a, batch.node_b from cc_batch_edges as batch;

        create temporary table cc_touched as
        with touched_ends as (
            select cc_added.node_a as node_id, false as lost_edge from cc_added
            union all
            select cc_added.node_b as node_id, false as lost_edge from cc_added
            union all
            select cc_removed.node_a as node_id, true as lost_edge from cc_removed
            union all
            select cc_removed.node_b as node_id, true as lost_edge from cc_removed
        )

        select touched_ends.node_id, bool_or(touched_ends.lost_edge) as lost_edge
        from touched_ends
        group by touched_ends.node_id;

        create temporary table cc_region as
        with touched_components as (
            select
                previous.component_id,
                bool_or(cc_touched.lost_edge) as lost_edge
            from cc_touched
            inner join {{ target_relation }} as previous
                on previous.node_id = cc_touched.node_id
            group by previous.component_id
        ),

        previous_members as (
            select
                previous.node_id,
                previous.component_id,
                touched_components.lost_edge
            from {{ target_relation }} as previous
            inner join touched_components
                on touched_components.component_id = previous.component_id
        ),

        new_nodes as (
            select cc_touched.node_id
            from cc_touched
            left join {{ target_relation }} as previous
                on previous.node_id = cc_touched.node_id
            where previous.node_id is null
        )

        select previous_members.node_id, previous_members.component_id as previous_component_id,
            previous_members.lost_edge
        from previous_members
        union all
        select new_nodes.node_id, null as previous_component_id, false as lost_edge
        from new_nodes;

        alter table cc_region add primary key (node_id);
        analyze cc_region;

        create temporary table cc_region_edges as
        select batch.node_a, batch.node_b
        from cc_batch_edges as batch
        inner join cc_region
            on cc_region.node_id = batch.node_a;

        -- A component that only gained edges is still connected: its old label is
        -- a valid start and most of its nodes never change again.
        create temporary table cc_seeds as
        select cc_region.node_id, cc_region.previous_component_id as seed_id
        from cc_region
        where not cc_region.lost_edge
            and cc_region.previous_component_id is not null;

        alter table cc_seeds add primary key (node_id);
    {% endcall %}
{% endmacro %}


{% macro connected_components_replace(target_relation, existing_relation) %}
    {%- set new_relation = make_intermediate_relation(target_relation) -%}
    {%- set backup_relation = make_backup_relation(target_relation, 'table') -%}
    {% do adapter.drop_relation(new_relation) %}
    {% do adapter.drop_relation(backup_relation) %}

    {% call statement('cc_build_table') %}
        create table {{ new_relation }} as
        select cc_parent.node_id, cc_parent.parent_id as component_id
        from cc_parent
        order by cc_parent.parent_id;

        create unique index on {{ new_relation }} (node_id);
        create index on {{ new_relation }} (component_id);
        analyze {{ new_relation }};
    {% endcall %}

    {% if existing_relation is not none %}
        {% do adapter.rename_relation(existing_relation, backup_relation) %}
    {% endif %}
    {% do adapter.rename_relation(new_relation, target_relation) %}
    {% do adapter.drop_relation(backup_relation) %}
{% endmacro %}


{% macro connected_components_replace_edges(edges_relation, previous_edges) %}
    {% if previous_edges is not none %}
        {% do adapter.drop_relation(previous_edges) %}
    {% endif %}

    {% call statement('cc_keep_edges') %}
        create table {{ edges_relation }} as
        select cc_batch_edges.node_a, cc_batch_edges.node_b
        from cc_batch_edges;

        create index on {{ edges_relation }} (node_a, node_b);
    {% endcall %}
{% endmacro %}


{% macro connected_components_apply_changes(target_relation, edges_relation) %}
    {% call statement('cc_apply_changes') %}
        delete from {{ target_relation }} as components
        using cc_region
        where cc_region.node_id = components.node_id;

        insert into {{ target_relation }} (node_id, component_id)
        select cc_parent.node_id, cc_parent.parent_id
        from cc_parent;

        delete from {{ edges_relation }} as previous
        using cc_removed
        where cc_removed.node_a = previous.node_a
            and cc_removed.node_b = previous.node_b;

        insert into {{ edges_relation }} (node_a, node_b)
        select cc_added.node_a, cc_added.node_b from cc_added;

        analyze {{ target_relation }};
    {% endcall %}
{% endmacro %}


{% macro connected_components_record_run(runs_relation, mode, rounds, edges, nodes, seconds) %}
    {% call statement('cc_record_run') %}
        create table if not exists {{ runs_relation }} (
            built_at timestamp with time zone,
            invocation_id varchar(64),
            mode varchar(16),
            rounds integer,
            edge_count bigint,
            nodes_recomputed bigint,
            seconds numeric(12, 3)
        );

        insert into {{ runs_relation }} (
            built_at, invocation_id, mode, rounds, edge_count, nodes_recomputed, seconds
        )
        values (
            current_timestamp, '{{ invocation_id }}', '{{ mode }}', {{ rounds }},
            {{ edges }}, {{ nodes }}, {{ '%.3f' % seconds }}
        );
    {% endcall %}
{% endmacro %}


{% macro connected_components_drop_work_tables() %}
    {% call statement('cc_drop_work_tables') %}
        drop table if exists cc_batch_edges;
        drop table if exists cc_added;
        drop table if exists cc_removed;
        drop table if exists cc_touched;
        drop table if exists cc_region;
        drop table if exists cc_region_edges;
        drop table if exists cc_seeds;
        drop table if exists cc_links;
        drop table if exists cc_parent;
        drop table if exists cc_frontier;
        drop table if exists cc_offers;
        drop table if exists cc_jumps;
    {% endcall %}
{% endmacro %}
