{#- The labelling engine behind the connected_components materialization.

    Input: temp table cc_region_edges(node_a, node_b) holding every edge of the
    components being computed, and temp table cc_seeds(node_id, seed_id) giving a
    starting label for nodes whose component is known to be intact (may be empty).
    Output: temp table cc_parent(node_id, parent_id) where parent_id is the smallest
    node of the node's component.

    Each round hooks and then shortcuts (the Shiloach-Vishkin family):
    - hooking looks only at edges touching a node whose label changed last round
      (the frontier) and offers the smaller label to the other end AND to the other
      end's parent, so a whole tree moves under a smaller root in one step;
    - shortcutting replaces every label by its label's label, halving the depth of
      every tree, which is what keeps a 20,000-node chain to a dozen rounds instead
      of one round per hop.
    An edge whose two ends disagree always has an end on the frontier, so an empty
    frontier means every component carries one label, its smallest node. -#}

{% macro connected_components_prepare() %}
    {% call statement('cc_prepare') %}
        drop table if exists cc_links;
        drop table if exists cc_starts;
        drop table if exists cc_parent;
        drop table if exists cc_frontier;

        -- Both directions, so one index on src finds every neighbour.
        create temporary table cc_links as
        select region_edges.node_a as src, region_edges.node_b as dst
        from cc_region_edges as region_edges
        where region_edges.node_a <> region_edges.node_b
        union all
        select region_edges.node_b as src, region_edges.node_a as dst
        from cc_region_edges as region_edges
        where region_edges.node_a <> region_edges.node_b;

        create index cc_links_src on cc_links (src);
        analyze cc_links;

        -- Each node starts from its seed (or itself), then takes the smallest
        -- start among its neighbours: one full pass by hashing, cheaper than a
        -- first round of hooking with every node on the frontier.
        create temporary table cc_starts as
        with region_nodes as (
            select region_edges.node_a as node_id from cc_region_edges as region_edges
            union
            select region_edges.node_b as node_id from cc_region_edges as region_edges
        )
        select
            region_nodes.node_id,
            coalesce(seeds.seed_id, region_nodes.node_id) as start_id
        from region_nodes
        left join cc_seeds as seeds
            on seeds.node_id = region_nodes.node_id;

        create temporary table cc_parent as
        with neighbour_starts as (
            select links.src as node_id, min(starts.start_id) as start_id
            from cc_links as links
            inner join cc_starts as starts
                on starts.node_id = links.dst
            group by links.src
        )
        select
            starts.node_id,
            least(starts.start_id, neighbour_starts.start_id) as parent_id
        from cc_starts as starts
        left join neighbour_starts
            on neighbour_starts.node_id = starts.node_id;

        alter table cc_parent add primary key (node_id);
        analyze cc_parent;

        -- Only nodes that moved: two neighbours that both kept their start had
        -- the same start, since each took the smaller, so every edge whose ends
        -- still disagree has an end here.
        create temporary table cc_frontier as
        select parent.node_id
        from cc_parent as parent
        inner join cc_starts as starts
            on starts.node_id = parent.node_id
        where parent.parent_id < starts.start_id;

        alter table cc_frontier add primary key (node_id);
        analyze cc_frontier;

        drop table cc_starts;
    {% endcall %}
{% endmacro %}


{% macro connected_components_round() %}
    {% call statement('cc_round') %}
        drop table if exists cc_offers;
        drop table if exists cc_jumps;

        create temporary table cc_offers as
        with active_links as (
            select
                links.src,
                links.dst,
                src_parent.parent_id as src_label,
                dst_parent.parent_id as dst_label
            from cc_frontier as frontier
            inner join cc_links as links
                on links.src = frontier.node_id
            inner join cc_parent as src_parent
                on src_parent.node_id = links.src
            inner join cc_parent as dst_parent
                on dst_parent.node_id = links.dst
            where src_parent.parent_id <> dst_parent.parent_id
        ),

        offers as (
            select active_links.dst as node_id, active_links.src_label as label
            from active_links where active_links.src_label < active_links.dst_label
            union all
            select active_links.dst_label as node_id, active_links.src_label as label
            from active_links where active_links.src_label < active_links.dst_label
            union all
            select active_links.src as node_id, active_links.dst_label as label
            from active_links where active_links.dst_label < active_links.src_label
            union all
            select active_links.src_label as node_id, active_links.dst_label as label
            from active_links where active_links.dst_label < active_links.src_label
        )

        select offers.node_id, min(offers.label) as label
        from offers
        group by offers.node_id;

        truncate cc_frontier;

        insert into cc_frontier (node_id)
        select offers.node_id
        from cc_offers as offers
        inner join cc_parent as parent
            on parent.node_id = offers.node_id
        where offers.label < parent.parent_id;

        update cc_parent
        set parent_id = offers.label
        from cc_offers as offers
        where offers.node_id = cc_parent.node_id
            and offers.label < cc_parent.parent_id;

        create temporary table cc_jumps as
        select child.node_id, grandparent.parent_id
        from cc_parent as child
        inner join cc_parent as grandparent
            on grandparent.node_id = child.parent_id
        where grandparent.parent_id < child.parent_id;

        update cc_parent
        set parent_id = jumps.parent_id
        from cc_jumps as jumps
        where jumps.node_id = cc_parent.node_id;

        insert into cc_frontier (node_id)
        select jumps.node_id
        from cc_jumps as jumps
        where not exists (
            select 1 from cc_frontier as frontier where frontier.node_id = jumps.node_id
        );

        analyze cc_frontier;
    {% endcall %}

    {{ return(run_query('select count(*) from cc_frontier').columns[0].values()[0]) }}
{% endmacro %}


{#- Runs rounds until the frontier is empty and returns how many it took. The cap
    is a guard against a bug, not a tuning knob: it is far above the ~log2(longest
    path) rounds the algorithm needs. -#}
{% macro connected_components_converge(max_rounds) %}
    {% do connected_components_prepare() %}

    {% set frontier = run_query('select count(*) from cc_frontier').columns[0].values()[0] %}
    {% set state = namespace(rounds=0, frontier=frontier) %}
    {% for round in range(1, max_rounds + 1) if state.frontier > 0 %}
        {% set state.frontier = connected_components_round() %}
        {% set state.rounds = round %}
        {% do log('connected_components round ' ~ round ~ ': ' ~ state.frontier
                  ~ ' nodes changed label') %}
    {% endfor %}

    {% if state.frontier > 0 %}
        {% do exceptions.raise_compiler_error(
            'connected_components did not converge within ' ~ max_rounds ~ ' rounds ('
            ~ state.frontier ~ ' nodes still changing). This is a bug in the engine, not a'
            ~ ' setting to raise: report it with the model name and edge count.') %}
    {% endif %}

    {{ return(state.rounds) }}
{% endmacro %}
