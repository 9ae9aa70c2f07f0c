from django.apps import AppConfig


class SyncerConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "syncer"
    verbose_name = "Sync engine"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate
        from django_q.signals import post_spawn

        from syncer.recovery import on_worker_spawn
        from syncer.schedules import prune_schedule_ensure

        post_spawn.connect(on_worker_spawn, dispatch_uid="syncer-resume-stale-runs")
        # Every installation migrates: that is where the daily prune's schedule is made. Once per migrate,
        # after django-q2's own app (this one has no models, so migrate sends it no signal).
        post_migrate.connect(prune_schedule_ensure, sender=self.apps.get_app_config("django_q"),
                             dispatch_uid="syncer-prune-schedule")
