{#- Fails for each combination of the columns that appears on more than one
    row: the multi-column key test, since dbt_utils is not installed. -#}
{% test unique_together(model, columns) %}

select
    {{ columns | join(', ') }},
    count(*) as row_count
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
